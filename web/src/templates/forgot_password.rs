//! "Forgot your password?": asks for a reset link by mail.

use crate::ui::{field_error, page_live, until_live};
use perseus::prelude::*;
use sycamore::prelude::*;

fn forgot_password_page<G: Html>(cx: Scope) -> View<G> {
    let email = create_signal(cx, String::new());
    let email_error = create_signal(cx, Option::<String>::None);
    let error = create_signal(cx, Option::<String>::None);
    let sent = create_signal(cx, Option::<String>::None);
    let busy = create_signal(cx, false);
    let hydrated = page_live(cx);

    let on_submit = move |event: sycamore::rt::Event| {
        event.prevent_default();
        if *busy.get() {
            return;
        }
        #[cfg(client)]
        {
            busy.set(true);
            error.set(None);
            email_error.set(None);
            let value = email.get().trim().to_owned();
            spawn_local_scoped(cx, async move {
                match crate::api::forgot_password(value).await {
                    Ok(message) => sent.set(Some(message)),
                    Err(refusal) => match refusal.field {
                        Some(crate::api::Field::Email) => email_error.set(Some(refusal.message)),
                        _ => error.set(Some(refusal.message)),
                    },
                }
                busy.set(false);
            });
        }
    };

    view! { cx,
        main(data-hydrated = hydrated.get().to_string()) {
            p(class = "brand") { "latchkey" }
            div(class = "card") {
                h1 { "Forgot your password?" }
                (match (*sent.get()).clone() {
                    Some(message) => view! { cx,
                        p(class = "notice", role = "status", id = "forgot-sent") { (message) }
                        p(class = "hint") { "The link works for a short while. Nothing arrived? Check your spam folder, or ask again in a few minutes." }
                    },
                    None => view! { cx,
                        p(class = "hint") { "Enter the email of your account and we will send you a link to choose a new password." }
                        form(id = "forgot", method = "post", on:submit = on_submit, novalidate = true) {
                            label {
                                "Email"
                                input(id = "email", type = "email", name = "email", autocomplete = "username",
                                    required = true, aria-invalid = email_error.get().is_some().to_string(),
                                    aria-describedby = "email-error", bind:value = email)
                            }
                            (field_error(cx, "email-error", email_error))
                            (match (*error.get()).clone() {
                                Some(message) => view! { cx, p(class = "alert", role = "alert", id = "form-error") { (message) } },
                                None => view! { cx, },
                            })
                            button(type = "submit", id = "submit", disabled = *busy.get() || !*hydrated.get(),
                                aria-busy = busy.get().to_string()) {
                                (if *busy.get() { "Sending…" } else { "Send me a link" })
                            }
                            (until_live(cx, hydrated))
                        }
                    },
                })
                p(class = "switch") { a(href = "login", id = "to-login") { "Back to log in" } }
            }
        }
    }
}

#[engine_only_fn]
fn head(cx: Scope) -> View<SsrNode> {
    view! { cx, title { "Forgot your password? · latchkey" } }
}

pub fn get_template<G: Html>() -> Template<G> {
    Template::build("forgot-password")
        .view(forgot_password_page)
        .head(head)
        .build()
}
