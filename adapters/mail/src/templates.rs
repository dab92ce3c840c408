//! What each mail says, in plain text and in HTML.

use latchkey_domain::Mail;
use std::time::Duration;

/// What every mail needs to know about the service sending it.
#[derive(Clone, Debug)]
pub struct MailSettings {
    /// Named in every subject and signature.
    pub service_name: String,
    /// The site's base URL (`PUBLIC_URL`); links point to its pages.
    pub public_url: String,
    /// How long each kind of link works, stated in the mail.
    pub verify_link_lifetime: Duration,
    pub reset_link_lifetime: Duration,
}

impl MailSettings {
    fn link(&self, page: &str, token: &str) -> String {
        // In the fragment, which browsers never send: the token reaches no server's or proxy's
        // access log. Tokens are base64url, so nothing in them needs escaping.
        format!(
            "{}/{page}#token={token}",
            self.public_url.trim_end_matches('/')
        )
    }

    /// The reset link also names the address it was sent to, so that the page can hold it in a
    /// hidden `autocomplete="username"` field and password managers save the new password
    /// against the right account. In the fragment too, percent-encoded (`@` is `%40`).
    fn reset_link(&self, token: &str, address: &str) -> String {
        format!(
            "{}&email={}",
            self.link("reset-password", token),
            percent_encode(address)
        )
    }
}

/// Every byte but the unreserved ones of RFC 3986 (`A-Z a-z 0-9 - . _ ~`) as `%XX`, so that
/// the value reads back whole from a fragment of `name=value` pairs joined by `&` (a `+` stays
/// a plus, a `&` or `=` in an address cannot end the value early).
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A mail ready to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// "24 hours", "30 minutes", "1 hour": how people say a lifetime.
fn lifetime(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (count, unit) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else {
        (secs.div_ceil(60).max(1), "minute")
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The parts one mail is made of; each becomes a paragraph in both bodies.
struct Parts<'a> {
    subject: String,
    intro: String,
    action: &'a str,
    link: String,
    validity: String,
    closing: &'a str,
}

pub fn render(mail: &Mail, settings: &MailSettings) -> RenderedMail {
    let service = &settings.service_name;
    let to = mail.to().as_str();
    let parts = match mail {
        Mail::VerifyEmail { token, .. } => Parts {
            subject: format!("Confirm your email address for {service}"),
            intro: format!(
                "Please confirm that {to} is your email address for your new {service} account."
            ),
            action: "Confirm my email address",
            link: settings.link("verify-email", token.expose()),
            validity: format!(
                "The link works once, for {}.",
                lifetime(settings.verify_link_lifetime)
            ),
            // Someone else may have registered the address. Confirming from elsewhere signs
            // them out and offers a reset, but the plainest advice is the reset itself.
            closing: "If you did not create this account, someone else chose its password: \
                      use \"Forgot password\" to take the account over, or ignore this mail.",
        },
        Mail::ResetPassword { token, .. } => Parts {
            subject: format!("Reset your {service} password"),
            intro: format!(
                "Someone, hopefully you, asked to reset the password of the {service} account \
                 for {to}."
            ),
            action: "Choose a new password",
            link: settings.reset_link(token.expose(), to),
            validity: format!(
                "The link works once, for {}. Choosing a new password signs you out on every \
                 device.",
                lifetime(settings.reset_link_lifetime)
            ),
            closing: "If you did not ask for this, ignore this mail: your password stays as it is.",
        },
    };
    let text = format!(
        "Hello,\n\n{intro}\n\n{action}:\n{link}\n\n{validity}\n\n{closing}\n\n-- \n{service}\n",
        intro = parts.intro,
        action = parts.action,
        link = parts.link,
        validity = parts.validity,
        closing = parts.closing,
    );
    let html = format!(
        "<!doctype html>\n<html><body style=\"font-family: sans-serif; line-height: 1.5; \
         color: #222; max-width: 36em\">\n<p>Hello,</p>\n<p>{intro}</p>\n\
         <p><a href=\"{link}\" style=\"display: inline-block; padding: 0.6em 1.2em; \
         background: #2b59c3; color: #fff; text-decoration: none; border-radius: 4px\">{action}</a></p>\n\
         <p>Or copy this link into your browser:<br><span style=\"word-break: break-all\">{link}</span></p>\n\
         <p>{validity}</p>\n<p>{closing}</p>\n<p>&mdash; {service}</p>\n</body></html>\n",
        intro = escape(&parts.intro),
        link = escape(&parts.link),
        action = escape(parts.action),
        validity = escape(&parts.validity),
        closing = escape(parts.closing),
        service = escape(service),
    );
    RenderedMail {
        to: to.to_owned(),
        subject: parts.subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_domain::{EmailAddress, MailTokenSecret};

    fn settings() -> MailSettings {
        MailSettings {
            service_name: "Acme <Login>".into(),
            public_url: "https://login.example.com/".into(),
            verify_link_lifetime: Duration::from_secs(24 * 3600),
            reset_link_lifetime: Duration::from_secs(30 * 60),
        }
    }

    fn token() -> MailTokenSecret {
        MailTokenSecret::from_random_bytes([7; 32])
    }

    #[test]
    fn the_verification_mail_links_to_the_sites_page_and_names_service_address_and_lifetime() {
        let mail = Mail::VerifyEmail {
            to: EmailAddress::parse("ann@example.com").unwrap(),
            token: token(),
        };
        let rendered = render(&mail, &settings());
        let link = format!(
            "https://login.example.com/verify-email#token={}",
            token().expose()
        );
        assert_eq!(rendered.to, "ann@example.com");
        assert_eq!(
            rendered.subject,
            "Confirm your email address for Acme <Login>"
        );
        for expected in [&link, "ann@example.com", "Acme <Login>", "for 24 hours"] {
            assert!(
                rendered.text.contains(expected),
                "{expected} in {}",
                rendered.text
            );
        }
        assert!(rendered.html.contains(&format!("href=\"{link}\"")));
        assert!(rendered.html.contains("Acme &lt;Login&gt;"), "escaped");
        assert!(!rendered.html.contains("<Login>"));
    }

    #[test]
    fn the_reset_mail_links_to_the_reset_page_and_says_what_a_reset_does() {
        let mail = Mail::ResetPassword {
            to: EmailAddress::parse("ann@example.com").unwrap(),
            token: token(),
        };
        let rendered = render(&mail, &settings());
        assert_eq!(rendered.subject, "Reset your Acme <Login> password");
        let link = format!(
            "https://login.example.com/reset-password#token={}&email=ann%40example.com",
            token().expose()
        );
        assert!(
            rendered.text.contains(&format!("\n{link}\n")),
            "{link} in {}",
            rendered.text
        );
        assert!(rendered.text.contains("for 30 minutes"));
        assert!(rendered.text.contains("signs you out on every device"));
        // `&` is `&amp;` in HTML, in the attribute as in the text.
        let html_link = link.replace('&', "&amp;");
        assert!(
            rendered.html.contains(&format!("href=\"{html_link}\"")),
            "{}",
            rendered.html
        );
    }

    #[test]
    fn the_reset_link_names_the_address_percent_encoded_so_a_plus_survives() {
        let mail = Mail::ResetPassword {
            to: EmailAddress::parse("ann.o'neil+work~1@example.com").unwrap(),
            token: token(),
        };
        let rendered = render(&mail, &settings());
        let link = format!(
            "https://login.example.com/reset-password#token={}\
             &email=ann.o%27neil%2Bwork~1%40example.com",
            token().expose()
        );
        assert!(
            rendered.text.contains(&format!("\n{link}\n")),
            "{link} in {}",
            rendered.text
        );
        // The verification link names no address.
        let verify = render(
            &Mail::VerifyEmail {
                to: EmailAddress::parse("ann+work@example.com").unwrap(),
                token: token(),
            },
            &settings(),
        );
        assert!(!verify.text.contains("email="), "{}", verify.text);
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_ascii() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode("a+b@c"), "a%2Bb%40c");
        assert_eq!(percent_encode("&= %#/"), "%26%3D%20%25%23%2F");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn lifetimes_read_as_people_say_them() {
        assert_eq!(lifetime(Duration::from_secs(3600)), "1 hour");
        assert_eq!(lifetime(Duration::from_secs(7200)), "2 hours");
        assert_eq!(lifetime(Duration::from_secs(90 * 60)), "90 minutes");
        assert_eq!(lifetime(Duration::from_secs(60)), "1 minute");
        assert_eq!(lifetime(Duration::from_secs(61)), "2 minutes");
    }
}
