use crate::ui::{credentials_form, FormKind};
use perseus::prelude::*;
use sycamore::prelude::*;

fn register_page<G: Html>(cx: Scope) -> View<G> {
    credentials_form(cx, FormKind::Register)
}

#[engine_only_fn]
fn head(cx: Scope) -> View<SsrNode> {
    view! { cx, title { "Create an account · latchkey" } }
}

pub fn get_template<G: Html>() -> Template<G> {
    Template::build("register")
        .view(register_page)
        .head(head)
        .build()
}
