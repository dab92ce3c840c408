//! The latchkey web site. Pages are pre-rendered at build time (Perseus static export) and
//! hydrated in the browser; everything that talks to the API runs only in the browser.

mod style;
mod templates;
mod ui;

#[cfg(client)]
mod api;

use perseus::prelude::*;

#[perseus::main_export]
pub fn main<G: Html>() -> PerseusApp<G> {
    PerseusApp::new()
        .template(templates::home::get_template())
        .template(templates::login::get_template())
        .template(templates::register::get_template())
        .template(templates::forgot_password::get_template())
        .template(templates::reset_password::get_template())
        .template(templates::verify_email::get_template())
        .template(templates::account::get_template())
        .template(templates::users::get_template())
        .index_view(|cx| {
            sycamore::view! { cx,
                html(lang = "en") {
                    head {
                        meta(charset = "utf-8")
                        meta(name = "viewport", content = "width=device-width, initial-scale=1")
                        style { (style::CSS) }
                    }
                    body {
                        PerseusRoot()
                    }
                }
            }
        })
        .error_views(ErrorViews::unlocalized_development_default())
}
