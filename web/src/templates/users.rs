//! The administrators' page: find accounts and page through them, open one to change its roles,
//! disable or enable it, or end its sessions. The API decides who may: anyone else gets its
//! refusal here, in words.

use perseus::prelude::*;
use sycamore::prelude::*;

/// One account in the list, as shown.
#[derive(Clone, PartialEq, Eq)]
struct Row {
    id: String,
    email: String,
    roles: String,
    disabled: bool,
}

/// The account opened.
#[derive(Clone, PartialEq, Eq)]
struct Detail {
    id: String,
    email: String,
    disabled: bool,
    active_sessions: u64,
    last_login: String,
}

fn users_page<G: Html>(cx: Scope) -> View<G> {
    let rows = create_signal(cx, Vec::<Row>::new());
    let query = create_signal(cx, String::new());
    // The query the rows answer: "More" and reloads go on with it, not with the box's text.
    let searched = create_signal(cx, String::new());
    let next_cursor = create_signal(cx, Option::<String>::None);
    let list_error = create_signal(cx, Option::<String>::None);
    // Counts finished loads (tests wait on it); the latest load's number drops older answers.
    let loads = create_signal(cx, 0u32);
    let latest_load = create_signal(cx, 0u32);

    let detail = create_signal(cx, Option::<Detail>::None);
    // As for the list: only the answer to the latest "Open" is shown.
    let latest_open = create_signal(cx, 0u32);
    // The account the administrator last opened: what a change's outcome is about, or not.
    let wanted = create_signal(cx, String::new());
    let roles_input = create_signal(cx, String::new());
    let detail_error = create_signal(cx, Option::<String>::None);
    let detail_status = create_signal(cx, Option::<String>::None);
    let working = create_signal(cx, false);

    let search = move |load: Load| {
        #[cfg(client)]
        spawn_local_scoped(cx, async move {
            let this_load = *latest_load.get() + 1;
            latest_load.set(this_load);
            if load == Load::New {
                searched.set((*query.get()).clone());
                // Until this search answers, "More" would mix it with the last one.
                next_cursor.set(None);
            }
            let more = load == Load::More;
            let cursor = if more {
                (*next_cursor.get()).clone()
            } else {
                None
            };
            let answer = crate::api::list_users((*searched.get()).clone(), cursor).await;
            if *latest_load.get() != this_load {
                return;
            }
            match answer {
                Ok(page) => {
                    let mut shown = if more {
                        (*rows.get()).clone()
                    } else {
                        Vec::new()
                    };
                    shown.extend(page.users.into_iter().map(|user| {
                        Row {
                            id: user.id.to_string(),
                            email: user.email,
                            roles: user
                                .roles
                                .iter()
                                .map(|r| r.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            disabled: user.disabled,
                        }
                    }));
                    rows.set(shown);
                    next_cursor.set(page.next_cursor);
                    list_error.set(None);
                }
                Err(message) => list_error.set(Some(message)),
            }
            loads.set(*loads.get() + 1);
        });
        #[cfg(not(client))]
        let _ = load;
    };

    // Never clears the messages: a reload after a change must not hide why it failed.
    let open = move |id: String| {
        #[cfg(client)]
        spawn_local_scoped(cx, async move {
            let this_open = *latest_open.get() + 1;
            latest_open.set(this_open);
            let Ok(uuid) = id.parse() else {
                detail_error.set(Some("This account cannot be opened.".into()));
                return;
            };
            let answer = crate::api::admin_user(uuid).await;
            if *latest_open.get() != this_open {
                return;
            }
            match answer {
                Ok(user) => {
                    roles_input.set(roles_text(user.roles.iter().map(|r| r.as_str())));
                    detail.set(Some(Detail {
                        id: user.id.to_string(),
                        email: user.email,
                        disabled: user.disabled,
                        active_sessions: user.active_sessions,
                        last_login: user
                            .last_login_at
                            .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
                            .unwrap_or_else(|| "never".into()),
                    }));
                }
                Err(message) => detail_error.set(Some(message)),
            }
        });
        #[cfg(not(client))]
        let _ = id;
    };

    #[cfg(client)]
    {
        crate::api::follow_other_tabs();
        if crate::api::session().is_signed_in() {
            search(Load::New);
        } else {
            crate::api::go_to_login();
        }
    }

    let on_search = move |event: sycamore::rt::Event| {
        event.prevent_default();
        search(Load::New);
    };
    let on_more = move |_| search(Load::More);

    // Runs one change to the opened account, then shows the account and the list as they are.
    let change = move |what: Change| {
        if *working.get() {
            return;
        }
        // Not while another account is being opened: the card is about to change.
        let Some(opened) = (*detail.get())
            .clone()
            .filter(|shown| *wanted.get() == shown.id)
        else {
            return;
        };
        #[cfg(client)]
        {
            working.set(true);
            detail_error.set(None);
            detail_status.set(None);
            let roles = (*roles_input.get()).clone();
            spawn_local_scoped(cx, async move {
                let outcome = match opened.id.parse() {
                    Err(_) => Err("This account cannot be changed.".to_owned()),
                    Ok(id) => match what {
                        Change::Roles => crate::api::set_user_roles(id, roles)
                            .await
                            .map(|()| "Roles saved.".to_owned()),
                        Change::Disable => crate::api::set_user_disabled(id, true)
                            .await
                            .map(|()| "Disabled: every session has ended.".to_owned()),
                        Change::Enable => crate::api::set_user_disabled(id, false)
                            .await
                            .map(|()| "Enabled: the account may log in again.".to_owned()),
                        Change::EndSessions => {
                            crate::api::end_user_sessions(id).await.map(|ended| {
                                format!(
                                    "{ended} session{} ended.",
                                    if ended == 1 { "" } else { "s" }
                                )
                            })
                        }
                    },
                };
                working.set(false);
                // Said and shown only if that account is still the one wanted: another may
                // have been opened meanwhile.
                if *wanted.get() == opened.id {
                    match outcome {
                        Ok(message) => detail_status.set(Some(message)),
                        Err(message) => detail_error.set(Some(message)),
                    }
                    open(opened.id);
                }
                search(Load::Again);
            });
        }
        #[cfg(not(client))]
        let _ = (what, opened);
    };

    let on_save_roles = move |event: sycamore::rt::Event| {
        event.prevent_default();
        change(Change::Roles);
    };

    view! { cx,
        main(class = "wide") {
            p(class = "brand") { "latchkey" }
            div(class = "card", id = "users-card", data-loads = loads.get().to_string()) {
                h1 { "Users" }
                (crate::ui::tab_notice(cx))
                p(class = "switch-left") { a(href = "/", id = "to-home") { "← Back" } }
                form(id = "user-search", on:submit = on_search, novalidate = true) {
                    label {
                        "Email starts with"
                        input(id = "user-query", type = "search", autocomplete = "off", bind:value = query)
                    }
                    button(type = "submit", id = "user-search-submit") { "Search" }
                }
                (match (*list_error.get()).clone() {
                    Some(message) => view! { cx, p(class = "alert", role = "alert", id = "users-error") { (message) } },
                    None => view! { cx, },
                })
                ul(class = "sessions", id = "users") {
                    Indexed(
                        iterable = rows,
                        view = move |cx, row| {
                            let id = row.id.clone();
                            let on_open = move |_| {
                                detail_error.set(None);
                                detail_status.set(None);
                                wanted.set(id.clone());
                                open(id.clone());
                            };
                            let state = if row.disabled { "disabled" } else { "active" };
                            let details = format!("{} · {state}", row.roles);
                            let email = row.email.clone();
                            view! { cx,
                                li(class = "session user-row", data-email = row.email, data-disabled = row.disabled.to_string()) {
                                    div(class = "session-text") {
                                        strong { (email) }
                                        span(class = "hint") { (details) }
                                    }
                                    button(class = "secondary open-user", on:click = on_open) { "Open" }
                                }
                            }
                        },
                    )
                }
                (if next_cursor.get().is_some() {
                    view! { cx, div(class = "actions") { button(class = "secondary", id = "users-more", on:click = on_more) { "More" } } }
                } else {
                    view! { cx, }
                })
            }
            (match (*detail.get()).clone() {
                Some(opened) => {
                    let state = if opened.disabled { "Disabled" } else { "Active" };
                    let toggle = if opened.disabled { Change::Enable } else { Change::Disable };
                    let toggle_label = if opened.disabled { "Enable" } else { "Disable" };
                    let email = opened.email.clone();
                    let last_login = opened.last_login.clone();
                    view! { cx,
                        div(class = "card", id = "user-detail", data-email = opened.email, data-disabled = opened.disabled.to_string()) {
                            h2 { (email) }
                            dl {
                                dt { "Status" } dd(id = "user-state") { (state) }
                                dt { "Live sessions" } dd(id = "user-sessions") { (opened.active_sessions) }
                                dt { "Last login" } dd { (last_login) }
                            }
                            form(id = "user-roles-form", on:submit = on_save_roles, novalidate = true) {
                                label {
                                    "Roles besides user (comma-separated)"
                                    input(id = "user-roles-input", type = "text", autocomplete = "off", bind:value = roles_input)
                                }
                                button(type = "submit", id = "user-roles-save", disabled = *working.get()) { "Save roles" }
                            }
                            div(class = "actions") {
                                button(class = "danger", id = "user-toggle", on:click = move |_| change(toggle), disabled = *working.get()) { (toggle_label) }
                                button(class = "secondary", id = "user-end-sessions", on:click = move |_| change(Change::EndSessions), disabled = *working.get()) { "End sessions" }
                            }
                            (if opened.disabled && opened.active_sessions > 0 {
                                view! { cx, p(class = "alert", role = "alert", id = "user-live-sessions") {
                                    "Disabled, but sessions are still live: end them with \"End sessions\"."
                                } }
                            } else {
                                view! { cx, }
                            })
                            (match (*detail_status.get()).clone() {
                                Some(message) => view! { cx, p(class = "notice", role = "status", id = "user-status") { (message) } },
                                None => view! { cx, },
                            })
                        }
                    }
                }
                None => view! { cx, },
            })
            (match (*detail_error.get()).clone() {
                Some(message) => view! { cx, p(class = "alert", role = "alert", id = "user-error") { (message) } },
                None => view! { cx, },
            })
        }
    }
}

/// Which page of the list to load.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    /// The first page of what the search box says now.
    New,
    /// The page after those shown.
    More,
    /// The first page of the search shown, again (after a change).
    Again,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Roles,
    Disable,
    Enable,
    EndSessions,
}

/// `user` goes without saying (every account has it); the rest, comma-separated.
#[cfg_attr(not(client), allow(dead_code))]
fn roles_text<'a>(roles: impl Iterator<Item = &'a str>) -> String {
    roles
        .filter(|role| *role != "user")
        .collect::<Vec<_>>()
        .join(", ")
}

#[engine_only_fn]
fn head(cx: Scope) -> View<SsrNode> {
    view! { cx, title { "Users · latchkey" } }
}

pub fn get_template<G: Html>() -> Template<G> {
    Template::build("users").view(users_page).head(head).build()
}
