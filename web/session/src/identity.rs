//! Whose tokens these are: the account and session an access token names.

use crate::Tokens;

/// The account (`sub`) and the session (`sid`) an access token was issued for. A refresh keeps
/// both; only a new log-in (of this account or another) changes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub session: String,
}

impl Tokens {
    /// Read from the access token's claims without checking its signature: the page only
    /// compares it with the identity it shows, and the server checks every token it receives.
    /// `None` for a token that is not a JWT naming both.
    pub fn identity(&self) -> Option<Identity> {
        let payload = self.access_token.split('.').nth(1)?;
        let claims: serde_json::Value = serde_json::from_slice(&base64url_decode(payload)?).ok()?;
        let claim = |name: &str| Some(claims.get(name)?.as_str()?.to_owned());
        Some(Identity {
            account: claim("sub")?,
            session: claim("sid")?,
        })
    }
}

/// Unpadded base64url (RFC 4648 §5), as JWT segments are written.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // A lone trailing character carries fewer than 8 bits: no valid encoding ends that way.
    (bits < 6).then_some(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Unpadded base64url, for writing test tokens.
    pub(crate) fn base64url_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut text = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                text.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        text
    }

    /// An access token as the server writes one, for `account`'s `session`; `n` tells apart
    /// the tokens a refresh issues for the same session.
    pub(crate) fn access_token(account: &str, session: &str, n: u32) -> String {
        let claims = format!(r#"{{"sub":"{account}","sid":"{session}","jti":"{n}","exp":1}}"#);
        format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.c2lnbmF0dXJl",
            base64url_encode(claims.as_bytes())
        )
    }

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
            assert_eq!(
                base64url_decode(&base64url_encode(&bytes)),
                Some(bytes),
                "{len}"
            );
        }
    }

    #[test]
    fn the_identity_is_read_from_the_access_tokens_claims() {
        let tokens = Tokens {
            access_token: access_token("ann", "s1", 0),
            refresh_token: "r".into(),
        };
        assert_eq!(
            tokens.identity(),
            Some(Identity {
                account: "ann".into(),
                session: "s1".into()
            })
        );
    }

    #[test]
    fn a_token_that_names_no_account_and_session_has_no_identity() {
        let claims_without_sid = base64url_encode(br#"{"sub":"ann"}"#);
        for access_token in [
            "opaque".to_owned(),
            "a.b*c.d".to_owned(),
            format!("h.{}.s", base64url_encode(b"not json")),
            format!("h.{claims_without_sid}.s"),
            format!("h.{}.s", base64url_encode(br#"{"sub":1,"sid":"s"}"#)),
            // One character too many: not a whole byte.
            format!("h.{}A.s", base64url_encode(br#"{"sub":"a","sid":"s"}"#)),
        ] {
            let tokens = Tokens {
                access_token: access_token.clone(),
                refresh_token: "r".into(),
            };
            assert_eq!(tokens.identity(), None, "{access_token}");
        }
    }
}
