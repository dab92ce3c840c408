use crate::ui::{credentials_form, FormKind};
use perseus::prelude::*;
use sycamore::prelude::*;

fn login_page<G: Html>(cx: Scope) -> View<G> {
    credentials_form(cx, FormKind::Login)
}

#[engine_only_fn]
fn head(cx: Scope) -> View<SsrNode> {
    view! { cx, title { "Log in · latchkey" } }
}

pub fn get_template<G: Html>() -> Template<G> {
    Template::build("login").view(login_page).head(head).build()
}
