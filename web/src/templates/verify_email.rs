//! Where the link in a verification mail leads. The address is confirmed by a click, not by
//! opening the page: mail scanners that open links must not confirm it for its owner.

use perseus::prelude::*;
use sycamore::prelude::*;

#[derive(Clone, PartialEq, Eq)]
enum Outcome {
    Waiting,
    Checking,
    Verified,
    /// Confirmed from a browser not signed in to the account: its sessions ended.
    VerifiedElsewhere,
    Refused(String),
}

fn verify_email_page<G: Html>(cx: Scope) -> View<G> {
    let outcome = create_signal(cx, Outcome::Waiting);
    // A failure the same link may get past on another try (the server was unreachable).
    let retry_note = create_signal(cx, Option::<String>::None);
    let hydrated = create_signal(cx, false);
    #[cfg(client)]
    {
        hydrated.set(true);
        // Read now, so the token leaves the address bar at once; said after hydration, which
        // expects the page as exported.
        if crate::api::link_token().is_none() {
            spawn_local_scoped(cx, async move {
                outcome.set(Outcome::Refused(
                    "This page needs the link from your mail.".into(),
                ));
            });
        }
    }

    let on_confirm = move |_| {
        if *outcome.get() != Outcome::Waiting {
            return;
        }
        #[cfg(client)]
        {
            let Some(token) = crate::api::link_token() else {
                return;
            };
            outcome.set(Outcome::Checking);
            retry_note.set(None);
            spawn_local_scoped(cx, async move {
                outcome.set(match crate::api::verify_email(token).await {
                    Ok(true) => Outcome::VerifiedElsewhere,
                    Ok(false) => Outcome::Verified,
                    Err(failure) if failure.link_still_good => {
                        retry_note.set(Some(failure.message));
                        Outcome::Waiting
                    }
                    Err(failure) => Outcome::Refused(failure.message),
                });
            });
        }
    };

    view! { cx,
        main(data-hydrated = hydrated.get().to_string()) {
            p(class = "brand") { "latchkey" }
            div(class = "card") {
                h1 { "Confirm your email" }
                (match (*outcome.get()).clone() {
                    Outcome::Waiting | Outcome::Checking => view! { cx,
                        p(class = "hint") { "One click confirms that this address is yours." }
                        (match (*retry_note.get()).clone() {
                            Some(message) => view! { cx, p(class = "alert", role = "alert", id = "verify-retry") { (message) } },
                            None => view! { cx, },
                        })
                        div(class = "actions") {
                            button(id = "confirm", on:click = on_confirm,
                                disabled = !*hydrated.get() || *outcome.get() == Outcome::Checking) {
                                (if *outcome.get() == Outcome::Checking { "Confirming…" } else { "Confirm my email" })
                            }
                        }
                    },
                    Outcome::Verified => view! { cx,
                        p(class = "notice", role = "status", id = "verify-done") { "Thank you: your email address is confirmed." }
                        p(class = "switch") { a(href = "/", id = "to-home") { "Go to your account" } }
                    },
                    Outcome::VerifiedElsewhere => view! { cx,
                        p(class = "notice", role = "status", id = "verify-done") { "Thank you: your email address is confirmed." }
                        p(class = "hint", id = "verify-sessions-ended") {
                            "To be safe, everyone signed in to this account has been signed out: this browser was not signed in to it, so we cannot tell who created it. If you did, log in again."
                        }
                        p(class = "hint") { "If you did not create this account, someone else chose its password. Choose your own: we mail you a link, and it signs everyone else out." }
                        div(class = "actions") {
                            a(class = "button-link", id = "not-me", href = "/forgot-password") {
                                "This was not me: set a new password"
                            }
                        }
                        p(class = "switch") { a(href = "/login", id = "to-login") { "Log in" } }
                    },
                    Outcome::Refused(message) => view! { cx,
                        p(class = "alert", role = "alert", id = "verify-error") { (message) }
                        p(class = "hint") {
                            "If you confirmed already, there is nothing left to do. Otherwise, sign in and choose \"Send again\" for a new link (or, if signing in asks for a confirmed email, use \"Forgot your password?\": its link confirms the address too)."
                        }
                        p(class = "switch") { a(href = "/", id = "to-home") { "Go to your account" } }
                    },
                })
            }
        }
    }
}

#[engine_only_fn]
fn head(cx: Scope) -> View<SsrNode> {
    view! { cx, title { "Confirm your email · latchkey" } }
}

pub fn get_template<G: Html>() -> Template<G> {
    Template::build("verify-email")
        .view(verify_email_page)
        .head(head)
        .build()
}
