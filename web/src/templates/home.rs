//! The signed-in page. Loads the user and the session in parallel, so an expired access token
//! makes two calls fail together (and the session logic turns that into one refresh).

use perseus::prelude::*;
use sycamore::prelude::*;

#[derive(Clone, PartialEq, Eq)]
struct Account {
    email: String,
    roles: String,
    admin: bool,
    member_since: String,
    session_id: String,
    token_expires: String,
    email_verified: bool,
}

fn home_page<G: Html>(cx: Scope) -> View<G> {
    let account = create_signal(cx, Option::<Account>::None);
    let error = create_signal(cx, Option::<String>::None);
    let busy = create_signal(cx, false);
    let loads = create_signal(cx, 0u32);
    let logging_out = create_signal(cx, false);
    let logout_error = create_signal(cx, Option::<String>::None);
    let resending = create_signal(cx, false);
    let resend_status = create_signal(cx, Option::<String>::None);

    let load = move || {
        #[cfg(client)]
        {
            busy.set(true);
            spawn_local_scoped(cx, async move {
                let (user, session) =
                    futures::join!(crate::api::current_user(), crate::api::current_session());
                match (user, session) {
                    (Ok(user), Ok(session)) => {
                        account.set(Some(Account {
                            email: user.email,
                            admin: user.roles.iter().any(|r| r.as_str() == "admin"),
                            roles: user
                                .roles
                                .iter()
                                .map(|r| r.as_str().to_owned())
                                .collect::<Vec<_>>()
                                .join(", "),
                            member_since: user.created_at.format("%Y-%m-%d").to_string(),
                            session_id: session.session_id.to_string(),
                            token_expires: session.expires_at.format("%H:%M:%S UTC").to_string(),
                            email_verified: user.email_verified,
                        }));
                        error.set(None);
                        loads.set(*loads.get() + 1);
                    }
                    (Err(message), _) | (_, Err(message)) => error.set(Some(message)),
                }
                busy.set(false);
            });
        }
    };

    #[cfg(client)]
    {
        crate::api::follow_other_tabs();
        if crate::api::session().is_signed_in() {
            // After hydration, which expects the button as exported ("Check again").
            spawn_local_scoped(cx, async move { load() });
        } else {
            crate::api::go_to_login();
        }
    }

    let on_reload = move |_| load();
    let on_resend = move |_| {
        if *resending.get() {
            return;
        }
        #[cfg(client)]
        {
            resending.set(true);
            spawn_local_scoped(cx, async move {
                match crate::api::resend_verification().await {
                    Ok(()) => {
                        resend_status.set(Some(
                            "Unless your email is confirmed already, a new link is on its way (the older one no longer works).".into(),
                        ));
                        // Confirmed in another tab meanwhile? Then the banner goes.
                        load();
                    }
                    Err(message) => resend_status.set(Some(message)),
                }
                resending.set(false);
            });
        }
    };
    let on_logout = move |_| {
        if *logging_out.get() {
            return;
        }
        #[cfg(client)]
        {
            logging_out.set(true);
            logout_error.set(None);
            spawn_local_scoped(cx, async move {
                match crate::api::logout().await {
                    Ok(()) => crate::api::go_to("/login"),
                    // Still signed in: say so, and leave the button ready for another try.
                    Err(message) => {
                        logout_error.set(Some(message));
                        logging_out.set(false);
                    }
                }
            });
        }
    };

    view! { cx,
        main {
            p(class = "brand") { "latchkey" }
            div(class = "card", id = "account", data-loads = loads.get().to_string()) {
                h1 { "You are signed in" }
                (crate::ui::tab_notice(cx))
                (match (*account.get()).clone() {
                    Some(account) if !account.email_verified => view! { cx,
                        div(class = "banner", role = "status", id = "verify-banner") {
                            p { "Please confirm your email address with the link we sent you." }
                            button(class = "secondary", id = "resend", on:click = on_resend, disabled = *resending.get()) {
                                (if *resending.get() { "Sending…" } else { "Send again" })
                            }
                        }
                        (match (*resend_status.get()).clone() {
                            Some(message) => view! { cx, p(class = "hint", id = "resend-status") { (message) } },
                            None => view! { cx, },
                        })
                    },
                    _ => view! { cx, },
                })
                (match (*account.get()).clone() {
                    Some(account) => view! { cx,
                        dl {
                            dt { "Email" } dd(id = "user-email") { (account.email) }
                            dt { "Roles" } dd(id = "user-roles") { (account.roles) }
                            dt { "Member since" } dd { (account.member_since) }
                            dt { "Session" } dd(id = "session-id") { (account.session_id) }
                            dt { "Token expires" } dd(id = "token-expires") { (account.token_expires) }
                        }
                    },
                    None => view! { cx, p(class = "hint", id = "loading") { "Loading your account…" } },
                })
                (match (*error.get()).clone() {
                    Some(message) => view! { cx, p(class = "alert", role = "alert", id = "page-error") { (message) } },
                    None => view! { cx, },
                })
                (match (*logout_error.get()).clone() {
                    Some(message) => view! { cx, p(class = "alert", role = "alert", id = "logout-error") { (message) } },
                    None => view! { cx, },
                })
                div(class = "actions") {
                    button(class = "secondary", id = "reload", on:click = on_reload, disabled = *busy.get()) {
                        (if *busy.get() { "Checking…" } else { "Check again" })
                    }
                    a(class = "button-link", href = "account", id = "to-account") { "Your sessions and password" }
                    // Only administrators see the way in; anyone else typing the address gets
                    // the API's refusal there.
                    (if (*account.get()).as_ref().is_some_and(|account| account.admin) {
                        view! { cx, a(class = "button-link", href = "users", id = "to-users") { "Users" } }
                    } else {
                        view! { cx, }
                    })
                    button(id = "logout", on:click = on_logout, disabled = *logging_out.get(),
                        aria-busy = logging_out.get().to_string()) {
                        (if *logging_out.get() { "Logging out…" } else { "Log out" })
                    }
                }
            }
        }
    }
}

#[engine_only_fn]
fn head(cx: Scope) -> View<SsrNode> {
    view! { cx, title { "Your account · latchkey" } }
}

pub fn get_template<G: Html>() -> Template<G> {
    Template::build("").view(home_page).head(head).build()
}
