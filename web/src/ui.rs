//! The credentials form shared by the log-in and register pages.

use perseus::prelude::*;
use sycamore::prelude::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    Login,
    Register,
}

impl FormKind {
    fn title(self) -> &'static str {
        match self {
            FormKind::Login => "Log in",
            FormKind::Register => "Create your account",
        }
    }

    fn submit(self, busy: bool) -> &'static str {
        match (self, busy) {
            (FormKind::Login, false) => "Log in",
            (FormKind::Login, true) => "Logging in…",
            (FormKind::Register, false) => "Create account",
            (FormKind::Register, true) => "Creating account…",
        }
    }
}

pub fn credentials_form<G: Html>(cx: Scope, kind: FormKind) -> View<G> {
    let email = create_signal(cx, String::new());
    let password = create_signal(cx, String::new());
    let error = create_signal(cx, Option::<String>::None);
    // Refusals about one field are shown next to it (and announced), the rest under the form.
    let email_error = create_signal(cx, Option::<String>::None);
    let password_error = create_signal(cx, Option::<String>::None);
    let busy = create_signal(cx, false);
    // "true" once the page is live in the browser and following the other tabs (tests wait for
    // it before typing, or before signing in elsewhere).
    let hydrated = create_signal(cx, false);
    #[cfg(client)]
    {
        crate::api::follow_other_tabs();
        hydrated.set(true);
    }

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
            password_error.set(None);
            // Keyboards add spaces around addresses; the API takes an address exactly as sent.
            let (email_value, password_value) =
                (email.get().trim().to_owned(), (*password.get()).clone());
            spawn_local_scoped(cx, async move {
                let outcome = match kind {
                    FormKind::Login => crate::api::login(email_value, password_value)
                        .await
                        .map_err(crate::api::FormError::from),
                    FormKind::Register => {
                        crate::api::register_and_login(email_value, password_value).await
                    }
                };
                match outcome {
                    Ok(()) => crate::api::go_to(&crate::api::take_return_to()),
                    Err(refusal) => {
                        let shown_at = match refusal.field {
                            Some(crate::api::Field::Password)
                            | Some(crate::api::Field::CurrentPassword) => password_error,
                            Some(crate::api::Field::Email) => email_error,
                            None => error,
                        };
                        shown_at.set(Some(refusal.message));
                        busy.set(false);
                    }
                }
            });
        }
    };

    let (password_autocomplete, password_hint) = match kind {
        FormKind::Login => ("current-password", ""),
        FormKind::Register => (
            "new-password",
            "A passphrase works well: long, and not a common password.",
        ),
    };
    let switch = match kind {
        FormKind::Login => view! { cx,
            p(class = "switch") { a(href = "forgot-password", id = "to-forgot") { "Forgot your password?" } }
            p(class = "switch") { "New here? " a(href = "register", id = "to-register") { "Create an account" } }
        },
        FormKind::Register => view! { cx,
            p(class = "switch") { "Already registered? " a(href = "login", id = "to-login") { "Log in" } }
        },
    };

    view! { cx,
        main(data-hydrated = hydrated.get().to_string()) {
            p(class = "brand") { "latchkey" }
            div(class = "card") {
                h1 { (kind.title()) }
                form(id = "credentials", on:submit = on_submit, novalidate = true) {
                    label {
                        "Email"
                        input(id = "email", type = "email", name = "email", autocomplete = "username",
                            required = true, aria-invalid = email_error.get().is_some().to_string(),
                            aria-describedby = "email-error", bind:value = email)
                    }
                    (field_error(cx, "email-error", email_error))
                    label {
                        "Password"
                        input(id = "password", type = "password", name = "password",
                            autocomplete = password_autocomplete, required = true,
                            aria-invalid = password_error.get().is_some().to_string(),
                            aria-describedby = "password-error", bind:value = password)
                    }
                    (field_error(cx, "password-error", password_error))
                    (if password_hint.is_empty() {
                        view! { cx, }
                    } else {
                        view! { cx, p(class = "hint") { (password_hint) } }
                    })
                    (match (*error.get()).clone() {
                        Some(message) => view! { cx,
                            p(class = "alert", role = "alert", id = "form-error") { (message) }
                        },
                        None => view! { cx, },
                    })
                    button(type = "submit", id = "submit", disabled = *busy.get(),
                        aria-busy = busy.get().to_string()) {
                        (kind.submit(*busy.get()))
                    }
                }
                (switch)
            }
        }
    }
}

/// A refusal shown right under its field.
pub fn field_error<'a, G: Html>(
    cx: Scope<'a>,
    id: &'static str,
    message: &'a Signal<Option<String>>,
) -> View<G> {
    // Always present (empty and hidden when there is nothing to say), so the field's
    // `aria-describedby` always points at something.
    view! { cx,
        p(class = "field-error", role = "alert", id = id) {
            (message.get().as_deref().unwrap_or_default().to_owned())
        }
    }
}
