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

/// Who this browser is signed in as when the log-in or register page opens.
#[derive(Clone, PartialEq, Eq)]
enum SignedInHere {
    Nobody,
    /// Asking the server, before showing either the form or the choice.
    Checking,
    /// Signed in; the address, unless the server could not be asked.
    As(Option<String>),
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
    let hydrated = page_live(cx);
    let signed_in_here = create_signal(cx, SignedInHere::Nobody);
    let switching = create_signal(cx, false);
    #[cfg(client)]
    {
        crate::api::follow_other_tabs();
        // After hydration, which expects the page as exported (signed out, nothing to say).
        spawn_local_scoped(cx, async move {
            // Signing in over a session would leave it running with nobody able to reach it,
            // and every open page of it would follow to the new account: ask first.
            if crate::api::session().is_signed_in() {
                signed_in_here.set(SignedInHere::Checking);
                signed_in_here.set(match crate::api::signed_in_email().await {
                    Ok(Some(address)) => SignedInHere::As(Some(address)),
                    Ok(None) => SignedInHere::Nobody,
                    Err(_) => SignedInHere::As(None),
                });
            }
        });
    }

    let on_continue = move |_| {
        #[cfg(client)]
        crate::api::go_to(&crate::api::take_return_to());
    };
    let on_switch = move |_| {
        if *switching.get() {
            return;
        }
        #[cfg(client)]
        {
            switching.set(true);
            error.set(None);
            spawn_local_scoped(cx, async move {
                match crate::api::logout().await {
                    Ok(()) => signed_in_here.set(SignedInHere::Nobody),
                    Err(message) => error.set(Some(message)),
                }
                switching.set(false);
            });
        }
    };

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

    let form = view! { cx,
                form(id = "credentials", method = "post", on:submit = on_submit, novalidate = true) {
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
                    button(type = "submit", id = "submit", disabled = *busy.get() || !*hydrated.get(),
                        aria-busy = busy.get().to_string()) {
                        (kind.submit(*busy.get()))
                    }
                    (until_live(cx, hydrated))
                }
                (switch)
    };
    let form = create_ref(cx, form);

    view! { cx,
        main(data-hydrated = hydrated.get().to_string()) {
            p(class = "brand") { "latchkey" }
            div(class = "card") {
                h1 { (kind.title()) }
                (tab_notice(cx))
                (match (*signed_in_here.get()).clone() {
                    SignedInHere::Nobody => form.clone(),
                    SignedInHere::Checking => view! { cx,
                        p(class = "hint", id = "checking-session") { "Checking who is signed in…" }
                    },
                    SignedInHere::As(address) => {
                        let (said, continue_label) = match address {
                            Some(address) => (
                                format!("You are signed in as {address}."),
                                format!("Continue as {address}"),
                            ),
                            None => (
                                "You are signed in on this browser already.".to_owned(),
                                "Continue".to_owned(),
                            ),
                        };
                        view! { cx,
                            div(id = "signed-in-here") {
                                p(id = "signed-in-as") { (said) }
                                p(class = "hint") { "To use another account, switch: this signs the current one out here." }
                                (match (*error.get()).clone() {
                                    Some(message) => view! { cx,
                                        p(class = "alert", role = "alert", id = "form-error") { (message) }
                                    },
                                    None => view! { cx, },
                                })
                                div(class = "actions") {
                                    button(id = "continue", on:click = on_continue) { (continue_label) }
                                    button(class = "secondary", id = "switch-account", on:click = on_switch,
                                        disabled = *switching.get(), aria-busy = switching.get().to_string()) {
                                        (if *switching.get() { "Signing out…" } else { "Switch account" })
                                    }
                                }
                            }
                        }
                    }
                })
            }
        }
    }
}

/// "true" once the page runs in the browser. Until then a form must not be submitted: the
/// browser would send it natively, with the password in the address.
pub fn page_live(cx: Scope) -> &Signal<bool> {
    let live = create_signal(cx, false);
    #[cfg(client)]
    live.set(true);
    live
}

/// Said under a form's disabled button until the page is live (and forever when the script
/// cannot run).
pub fn until_live<'a, G: Html>(cx: Scope<'a>, live: &'a ReadSignal<bool>) -> View<G> {
    view! { cx,
        p(class = "hint", id = "not-live", hidden = *live.get()) {
            "Getting the page ready… It needs JavaScript; if this stays, reload the page."
        }
    }
}

/// Why this tab landed here, when another page of it said so.
pub fn tab_notice<G: Html>(cx: Scope) -> View<G> {
    let notice = create_signal(cx, Option::<String>::None);
    // After hydration, which expects the page as exported.
    #[cfg(client)]
    spawn_local_scoped(cx, async move {
        notice.set(crate::api::take_notice());
    });
    view! { cx,
        (match (*notice.get()).clone() {
            Some(message) => view! { cx, p(class = "notice", role = "status", id = "tab-notice") { (message) } },
            None => view! { cx, },
        })
    }
}

/// A field password managers read as the account a new password is for, on forms that do not
/// ask for the address.
pub fn username_for_password_managers<'a, G: Html>(
    cx: Scope<'a>,
    address: &'a ReadSignal<String>,
) -> View<G> {
    view! { cx,
        input(id = "username", type = "email", autocomplete = "username", readonly = true,
            hidden = true, value = (*address.get()).clone())
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
