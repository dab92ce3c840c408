//! Choosing a new password from the link in a reset mail.

use crate::ui::{field_error, page_live, until_live, username_for_password_managers};
use perseus::prelude::*;
use sycamore::prelude::*;

fn reset_password_page<G: Html>(cx: Scope) -> View<G> {
    let password = create_signal(cx, String::new());
    let password_error = create_signal(cx, Option::<String>::None);
    let error = create_signal(cx, Option::<String>::None);
    let done = create_signal(cx, false);
    let busy = create_signal(cx, false);
    let hydrated = page_live(cx);
    let address = create_signal(cx, String::new());
    #[cfg(client)]
    {
        // Read now, so the token leaves the address bar at once.
        let _ = crate::api::link_token();
        // After hydration, which expects the page as exported.
        spawn_local_scoped(cx, async move {
            address.set(crate::api::link_email().unwrap_or_default());
        });
    }

    let on_submit = move |event: sycamore::rt::Event| {
        event.prevent_default();
        if *busy.get() {
            return;
        }
        #[cfg(client)]
        {
            error.set(None);
            password_error.set(None);
            let Some(token) = crate::api::link_token() else {
                error.set(Some(
                    "This page needs the link from your mail. Ask for a new one.".into(),
                ));
                return;
            };
            busy.set(true);
            let value = (*password.get()).clone();
            spawn_local_scoped(cx, async move {
                match crate::api::reset_password(token, value).await {
                    Ok(()) => done.set(true),
                    Err(refusal) => match refusal.field {
                        Some(crate::api::Field::Password) => {
                            password_error.set(Some(refusal.message))
                        }
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
                h1 { "Choose a new password" }
                (if *done.get() {
                    view! { cx,
                        p(class = "notice", role = "status", id = "reset-done") {
                            "Your password has been changed, and you have been signed out everywhere."
                        }
                        p(class = "switch") { a(href = "login", id = "to-login") { "Log in with your new password" } }
                    }
                } else {
                    view! { cx,
                        form(id = "reset", method = "post", on:submit = on_submit, novalidate = true) {
                            (username_for_password_managers(cx, address))
                            label {
                                "New password"
                                input(id = "password", type = "password", name = "password",
                                    autocomplete = "new-password", required = true,
                                    aria-invalid = password_error.get().is_some().to_string(),
                                    aria-describedby = "password-error", bind:value = password)
                            }
                            (field_error(cx, "password-error", password_error))
                            p(class = "hint") { "A passphrase works well: long, and not a common password." }
                            (match (*error.get()).clone() {
                                Some(message) => view! { cx,
                                    p(class = "alert", role = "alert", id = "form-error") { (message) }
                                    p(class = "switch") { a(href = "forgot-password") { "Send me a new link" } }
                                },
                                None => view! { cx, },
                            })
                            button(type = "submit", id = "submit", disabled = *busy.get() || !*hydrated.get(),
                                aria-busy = busy.get().to_string()) {
                                (if *busy.get() { "Saving…" } else { "Set new password" })
                            }
                            (until_live(cx, hydrated))
                        }
                    }
                })
            }
        }
    }
}

#[engine_only_fn]
fn head(cx: Scope) -> View<SsrNode> {
    view! { cx, title { "Choose a new password · latchkey" } }
}

pub fn get_template<G: Html>() -> Template<G> {
    Template::build("reset-password")
        .view(reset_password_page)
        .head(head)
        .build()
}
