//! The account page: where the user is signed in (and ending any of it), changing the
//! password, and deleting the account.

use crate::ui::{field_error, page_live, until_live, username_for_password_managers};
use perseus::prelude::*;
use sycamore::prelude::*;

/// One row of the sessions list, as shown.
#[derive(Clone, PartialEq, Eq)]
struct SessionRow {
    id: String,
    device: String,
    address: String,
    signed_in: String,
    last_used: String,
    current: bool,
}

fn account_page<G: Html>(cx: Scope) -> View<G> {
    let sessions = create_signal(cx, Vec::<SessionRow>::new());
    let sessions_error = create_signal(cx, Option::<String>::None);
    // More sessions than the page reads (several hundred): the oldest are not shown.
    let sessions_more = create_signal(cx, false);
    // Kept apart from the list's own error, which a successful reload clears.
    let end_error = create_signal(cx, Option::<String>::None);
    let loads = create_signal(cx, 0u32);
    // Each load is numbered; an answer to an older one than the latest is dropped, so a slow
    // answer cannot bring back a session ended since.
    let latest_load = create_signal(cx, 0u32);
    let ending_all = create_signal(cx, false);

    let current_password = create_signal(cx, String::new());
    let new_password = create_signal(cx, String::new());
    let current_error = create_signal(cx, Option::<String>::None);
    let new_error = create_signal(cx, Option::<String>::None);
    let change_error = create_signal(cx, Option::<String>::None);
    let changed = create_signal(cx, false);
    let changing = create_signal(cx, false);

    // The account's address, for password managers saving a new password.
    let address = create_signal(cx, String::new());
    let live = page_live(cx);

    let delete_password = create_signal(cx, String::new());
    let delete_confirmed = create_signal(cx, false);
    let delete_error = create_signal(cx, Option::<String>::None);
    let deleting = create_signal(cx, false);

    let load = move || {
        #[cfg(client)]
        spawn_local_scoped(cx, async move {
            let this_load = *latest_load.get() + 1;
            latest_load.set(this_load);
            let answer = crate::api::list_sessions().await;
            if *latest_load.get() != this_load {
                return;
            }
            match answer {
                Ok((list, more)) => {
                    sessions_more.set(more);
                    sessions.set(
                        list.into_iter()
                            .map(|s| SessionRow {
                                id: s.id.to_string(),
                                device: s.user_agent.unwrap_or_else(|| "Unknown device".into()),
                                address: s.address.unwrap_or_else(|| "unknown address".into()),
                                signed_in: s.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                                last_used: s.last_used_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                                current: s.current,
                            })
                            .collect(),
                    );
                    sessions_error.set(None);
                    loads.set(*loads.get() + 1);
                }
                Err(message) => sessions_error.set(Some(message)),
            }
        });
    };

    #[cfg(client)]
    {
        crate::api::follow_other_tabs();
        if crate::api::session().is_signed_in() {
            load();
            spawn_local_scoped(cx, async move {
                if let Ok(user) = crate::api::current_user().await {
                    address.set(user.email);
                }
            });
        } else {
            crate::api::go_to_login();
        }
    }

    let on_end_all = move |_| {
        if *ending_all.get() {
            return;
        }
        #[cfg(client)]
        {
            ending_all.set(true);
            spawn_local_scoped(cx, async move {
                match crate::api::logout_all().await {
                    Ok(()) => crate::api::go_to("/login"),
                    Err(message) => {
                        sessions_error.set(Some(message));
                        ending_all.set(false);
                    }
                }
            });
        }
    };

    let on_change = move |event: sycamore::rt::Event| {
        event.prevent_default();
        if *changing.get() {
            return;
        }
        #[cfg(client)]
        {
            changing.set(true);
            changed.set(false);
            for message in [current_error, new_error, change_error] {
                message.set(None);
            }
            let (current, new) = (
                (*current_password.get()).clone(),
                (*new_password.get()).clone(),
            );
            spawn_local_scoped(cx, async move {
                match crate::api::change_password(current, new).await {
                    Ok(()) => {
                        changed.set(true);
                        current_password.set(String::new());
                        new_password.set(String::new());
                        // The other sessions have ended: the list shows it.
                        load();
                    }
                    Err(refusal) => match refusal.field {
                        Some(crate::api::Field::CurrentPassword) => {
                            current_error.set(Some(refusal.message))
                        }
                        Some(crate::api::Field::Password) => new_error.set(Some(refusal.message)),
                        _ => change_error.set(Some(refusal.message)),
                    },
                }
                changing.set(false);
            });
        }
    };

    let on_delete = move |event: sycamore::rt::Event| {
        event.prevent_default();
        if *deleting.get() || !*delete_confirmed.get() {
            return;
        }
        #[cfg(client)]
        {
            deleting.set(true);
            delete_error.set(None);
            let password = (*delete_password.get()).clone();
            spawn_local_scoped(cx, async move {
                match crate::api::delete_account(password).await {
                    Ok(()) => crate::api::go_to("/register"),
                    Err(refusal) => {
                        delete_error.set(Some(refusal.message));
                        deleting.set(false);
                    }
                }
            });
        }
    };

    view! { cx,
        main(class = "wide") {
            p(class = "brand") { "latchkey" }
            div(class = "card", id = "sessions-card", data-loads = loads.get().to_string()) {
                h1 { "Your account" }
                (crate::ui::tab_notice(cx))
                p(class = "switch-left") { a(href = "/", id = "to-home") { "← Back" } }
                h2 { "Where you are signed in" }
                ul(class = "sessions", id = "sessions") {
                    Indexed(
                        iterable = sessions,
                        view = move |cx, row| {
                            let id = row.id.clone();
                            let ending = create_signal(cx, false);
                            let on_end = move |_| {
                                if *ending.get() {
                                    return;
                                }
                                #[cfg(client)]
                                {
                                    ending.set(true);
                                    let id = id.clone();
                                    spawn_local_scoped(cx, async move {
                                        let outcome = match id.parse() {
                                            Ok(id) => crate::api::end_session(id).await,
                                            Err(_) => Err("This session cannot be ended.".into()),
                                        };
                                        end_error.set(outcome.err());
                                        // Either way the list shows what the server has now.
                                        ending.set(false);
                                        load();
                                    });
                                }
                                #[cfg(not(client))]
                                let _ = &id;
                            };
                            let action = if row.current {
                                view! { cx, span(class = "badge") { "This device" } }
                            } else {
                                view! { cx,
                                    button(class = "secondary end-session", on:click = on_end, disabled = *ending.get()) {
                                        (if *ending.get() { "Ending…" } else { "End" })
                                    }
                                }
                            };
                            let details = format!(
                                "{} · signed in {} · last used {}",
                                row.address, row.signed_in, row.last_used
                            );
                            view! { cx,
                                li(class = "session", data-current = row.current.to_string(), data-session-id = row.id.clone()) {
                                    div(class = "session-text") {
                                        strong(class = "device") { (row.device.clone()) }
                                        span(class = "hint") { (details) }
                                    }
                                    (action)
                                }
                            }
                        },
                    )
                }
                (if *sessions_more.get() {
                    view! { cx, p(class = "hint", id = "sessions-more") { "Only your most recent sessions are shown. “Sign out everywhere” ends them all." } }
                } else {
                    view! { cx, }
                })
                (match (*sessions_error.get()).clone() {
                    Some(message) => view! { cx, p(class = "alert", role = "alert", id = "sessions-error") { (message) } },
                    None => view! { cx, },
                })
                (match (*end_error.get()).clone() {
                    Some(message) => view! { cx, p(class = "alert", role = "alert", id = "end-error") { (message) } },
                    None => view! { cx, },
                })
                div(class = "actions") {
                    button(class = "secondary", id = "logout-all", on:click = on_end_all, disabled = *ending_all.get()) {
                        (if *ending_all.get() { "Signing out…" } else { "Sign out everywhere" })
                    }
                }
            }
            div(class = "card") {
                h2 { "Change your password" }
                (if *changed.get() {
                    view! { cx, p(class = "notice", role = "status", id = "change-done") { "Password changed. Your other sessions have been signed out." } }
                } else {
                    view! { cx, }
                })
                form(id = "change-password", method = "post", on:submit = on_change, novalidate = true) {
                    (username_for_password_managers(cx, address))
                    label {
                        "Current password"
                        input(id = "current-password", type = "password", autocomplete = "current-password",
                            aria-invalid = current_error.get().is_some().to_string(),
                            aria-describedby = "current-password-error", bind:value = current_password)
                    }
                    (field_error(cx, "current-password-error", current_error))
                    label {
                        "New password"
                        input(id = "new-password", type = "password", autocomplete = "new-password",
                            aria-invalid = new_error.get().is_some().to_string(),
                            aria-describedby = "new-password-error", bind:value = new_password)
                    }
                    (field_error(cx, "new-password-error", new_error))
                    (match (*change_error.get()).clone() {
                        Some(message) => view! { cx, p(class = "alert", role = "alert", id = "change-error") { (message) } },
                        None => view! { cx, },
                    })
                    button(type = "submit", id = "change-submit", disabled = *changing.get() || !*live.get()) {
                        (if *changing.get() { "Changing…" } else { "Change password" })
                    }
                    (until_live(cx, live))
                }
            }
            div(class = "card danger-zone") {
                h2 { "Delete your account" }
                p(class = "hint") { "This deletes your account and signs you out everywhere. It cannot be undone." }
                form(id = "delete-account", method = "post", on:submit = on_delete, novalidate = true) {
                    label {
                        "Password"
                        input(id = "delete-password", type = "password", autocomplete = "current-password",
                            bind:value = delete_password)
                    }
                    label(class = "check") {
                        input(id = "delete-confirm", type = "checkbox", bind:checked = delete_confirmed)
                        " I understand that my account will be gone for good"
                    }
                    (match (*delete_error.get()).clone() {
                        Some(message) => view! { cx, p(class = "alert", role = "alert", id = "delete-error") { (message) } },
                        None => view! { cx, },
                    })
                    button(type = "submit", class = "danger", id = "delete-submit",
                        disabled = *deleting.get() || !*delete_confirmed.get()) {
                        (if *deleting.get() { "Deleting…" } else { "Delete my account" })
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
    Template::build("account")
        .view(account_page)
        .head(head)
        .build()
}
