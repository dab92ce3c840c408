//! Where the link in a verification mail leads: verifies the address once the page is live.

use perseus::prelude::*;
use sycamore::prelude::*;

#[derive(Clone, PartialEq, Eq)]
enum Outcome {
    Checking,
    Verified,
    Refused(String),
}

fn verify_email_page<G: Html>(cx: Scope) -> View<G> {
    let outcome = create_signal(cx, Outcome::Checking);
    #[cfg(client)]
    {
        match crate::api::link_token() {
            Some(token) => spawn_local_scoped(cx, async move {
                outcome.set(match crate::api::verify_email(token).await {
                    Ok(()) => Outcome::Verified,
                    Err(message) => Outcome::Refused(message),
                });
            }),
            None => outcome.set(Outcome::Refused(
                "This page needs the link from your mail.".into(),
            )),
        }
    }

    view! { cx,
        main {
            p(class = "brand") { "latchkey" }
            div(class = "card") {
                h1 { "Confirm your email" }
                (match (*outcome.get()).clone() {
                    Outcome::Checking => view! { cx, p(class = "hint", id = "verify-checking") { "Checking your link…" } },
                    Outcome::Verified => view! { cx,
                        p(class = "notice", role = "status", id = "verify-done") { "Thank you: your email address is confirmed." }
                        p(class = "switch") { a(href = "/", id = "to-home") { "Go to your account" } }
                    },
                    Outcome::Refused(message) => view! { cx,
                        p(class = "alert", role = "alert", id = "verify-error") { (message) }
                        p(class = "hint") { "Sign in and choose \"Send again\" for a new link." }
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
