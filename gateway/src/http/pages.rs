//! Server-rendered pages (maud escapes every interpolation). One layout; no inline script or
//! style, so the Content-Security-Policy can stay strict.

use maud::{DOCTYPE, Markup, html};

use super::i18n::{Lang, Msg};
use crate::store::User;

/// The stylesheet served at `/assets/app.css`.
pub const CSS: &str = include_str!("../../assets/app.css");

/// Wraps `body` in the common page frame.
pub fn layout(lang: Lang, title: &str, body: Markup) -> Markup {
    let switch_label = match lang {
        Lang::Ja => "English",
        Lang::En => "日本語",
    };
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — " (Msg::ProductName.text(lang)) }
                link rel="stylesheet" href="/assets/app.css";
            }
            body {
                header {
                    span.product { (Msg::ProductName.text(lang)) }
                    a.lang href={ "?lang=" (lang.other().code()) } hreflang=(lang.other().code()) { (switch_label) }
                }
                main { (body) }
            }
        }
    }
}

/// A page with a single message (refusals and errors).
pub fn message(lang: Lang, title: Msg, text: &str) -> Markup {
    layout(
        lang,
        title.text(lang),
        html! {
            h1 { (title.text(lang)) }
            p.error role="alert" { (text) }
        },
    )
}

/// The login form, with an optional error and the last login ID typed.
pub fn login(lang: Lang, clinic_name: &str, error: Option<&str>, notice: Option<&str>, login_id: &str) -> Markup {
    layout(
        lang,
        Msg::LoginTitle.text(lang),
        html! {
            h1 { (Msg::LoginTitle.text(lang)) }
            p.clinic { (Msg::Clinic.text(lang)) "：" (clinic_name) }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            p { (Msg::LoginLead.text(lang)) }
            form method="post" action="/login" {
                label for="login_id" { (Msg::LoginId.text(lang)) }
                input #login_id name="login_id" type="text" autocomplete="username" required value=(login_id);
                label for="password" { (Msg::Password.text(lang)) }
                input #password name="password" type="password" autocomplete="current-password" required;
                button type="submit" { (Msg::SignIn.text(lang)) }
            }
        },
    )
}

/// The method page: three buttons, the doctor's linked authenticators, and sign-out.
pub fn methods(lang: Lang, clinic_name: &str, user: &User, linked: &[String]) -> Markup {
    layout(
        lang,
        Msg::MethodsTitle.text(lang),
        html! {
            p.who { (Msg::SignedInAs.text(lang)) " " (user.name) "（" (clinic_name) "）" }
            h1 { (Msg::MethodsTitle.text(lang)) }
            p { (Msg::MethodsLead.text(lang)) }
            div.methods {
                // Each method's flow is enabled by its own module; until then the button is shown
                // disabled with the reason, so doctors see what exists.
                button.method type="button" disabled title=(Msg::MethodNotReady.text(lang)) data-method="hpki" { (Msg::Hpki.text(lang)) }
                button.method type="button" disabled title=(Msg::MethodNotReady.text(lang)) data-method="fido" { (Msg::Fido.text(lang)) }
                button.method type="button" disabled title=(Msg::MethodNotReady.text(lang)) data-method="jpki" { (Msg::MyNumber.text(lang)) }
            }
            h2 { (Msg::Linked.text(lang)) }
            @if linked.is_empty() {
                p #linked-none { (Msg::NoneLinked.text(lang)) }
            } @else {
                ul #linked { @for l in linked { li { (l) } } }
            }
            form method="post" action="/logout" {
                button.secondary type="submit" { (Msg::SignOut.text(lang)) }
            }
        },
    )
}
