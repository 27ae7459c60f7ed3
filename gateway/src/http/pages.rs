//! Server-rendered pages (maud escapes every interpolation). One layout; no inline script or
//! style, so the Content-Security-Policy can stay strict.

use maud::{DOCTYPE, Markup, html};

use super::i18n::{Lang, Msg};
use crate::store::User;

/// The stylesheet served at `/assets/app.css`.
pub const CSS: &str = include_str!("../../assets/app.css");

/// The WebAuthn page script served at `/assets/fido.js` (a file, so the CSP needs no
/// `'unsafe-inline'`).
pub const FIDO_JS: &str = include_str!("../../assets/fido.js");

/// What the two method-page scripts share, served at `/assets/common.js` (loaded before them).
pub const COMMON_JS: &str = include_str!("../../assets/common.js");

/// The card page script served at `/assets/card.js`: challenge → local card agent → finish.
pub const CARD_JS: &str = include_str!("../../assets/card.js");

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

/// The page where a doctor changes the password: after signing in with a temporary one
/// (`temporary`, nothing else is open until then), or by choice from the methods page. Both ask
/// for the current password.
pub fn change_password(lang: Lang, clinic_name: &str, user: &User, temporary: bool, error: Option<&str>) -> Markup {
    layout(
        lang,
        Msg::PasswordChangeTitle.text(lang),
        html! {
            h1 { (Msg::PasswordChangeTitle.text(lang)) }
            p.who { (Msg::SignedInAs.text(lang)) " " (user.name) "（" (clinic_name) "）" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if temporary {
                p { (Msg::PasswordChangeLead.text(lang)) }
                p.hint { (Msg::PasswordRule.text(lang)) " " (Msg::PasswordCurrentNote.text(lang)) }
            } @else {
                p { (Msg::PasswordChangeLeadVoluntary.text(lang)) }
                p.hint { (Msg::PasswordRule.text(lang)) }
            }
            form method="post" action={ "/password?lang=" (lang.code()) } {
                // The login ID lets password managers file the new password under the account.
                input type="hidden" name="username" autocomplete="username" value=(user.login_id);
                label for="current_password" { (Msg::PasswordCurrent.text(lang)) }
                input #current_password name="current_password" type="password" autocomplete="current-password" required;
                label for="new_password" { (Msg::PasswordNew.text(lang)) }
                input #new_password name="new_password" type="password" autocomplete="new-password" minlength="8" maxlength="256" required;
                label for="confirm" { (Msg::PasswordConfirm.text(lang)) }
                input #confirm name="confirm" type="password" autocomplete="new-password" minlength="8" maxlength="256" required;
                button #change-password type="submit" { (Msg::PasswordChangeSubmit.text(lang)) }
            }
            form method="post" action="/logout" {
                button #sign-out.secondary type="submit" { (Msg::SignOut.text(lang)) }
            }
        },
    )
}

/// A linked authenticator as the method page lists it.
#[derive(Debug, Clone)]
pub struct LinkedView {
    /// `fido_credentials.id` or `card_credentials.id`.
    pub id: String,
    /// `fido`, `hpki` or `jpki`.
    pub kind: &'static str,
    /// Name the doctor gave it.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_used_at: Option<i64>,
    /// A synced passkey.
    pub synced: bool,
}

/// The live signing session, as the method page shows it.
#[derive(Debug, Clone, Copy)]
pub struct SigningView {
    /// Absolute expiry (Unix seconds).
    pub expires_at: i64,
    /// When it ends if idle (Unix seconds).
    pub idle_expires_at: i64,
}

/// What the method page shows besides the buttons.
#[derive(Debug, Default)]
pub struct MethodsView<'a> {
    /// Linked FIDO credentials and cards.
    pub credentials: Vec<LinkedView>,
    /// The doctor's live signing session at this clinic.
    pub signing: Option<SigningView>,
    /// A success message.
    pub notice: Option<&'a str>,
    /// A refusal message.
    pub error: Option<&'a str>,
}

/// The method page: signing-session state, three buttons, the doctor's linked authenticators,
/// linking, and sign-out. The FIDO flows run in `/assets/fido.js`; the messages it may show
/// are handed to it in `data-msg-*` attributes so all text stays in [`Msg`].
pub fn methods(lang: Lang, clinic_name: &str, user: &User, agent_url: &str, view: &MethodsView<'_>) -> Markup {
    let has_fido = view.credentials.iter().any(|c| c.kind == "fido");
    let has_hpki = view.credentials.iter().any(|c| c.kind == "hpki");
    let has_jpki = view.credentials.iter().any(|c| c.kind == "jpki");
    let q = format!("?lang={}", lang.code());
    layout(
        lang,
        Msg::MethodsTitle.text(lang),
        html! {
            p.who { (Msg::SignedInAs.text(lang)) " " (user.name) "（" (clinic_name) "）" }
            @if let Some(n) = view.notice { p.notice role="status" { (n) } }
            @if let Some(e) = view.error { p.error role="alert" { (e) } }
            @if let Some(s) = view.signing {
                section #signing-session.signed-in {
                    h2 #signing-state { (Msg::SigningActive.text(lang)) }
                    p { (Msg::SigningExpiresAt.text(lang)) " " time #signing-expires { (lang.format_time(s.expires_at)) } }
                    p { (Msg::SigningIdleAt.text(lang)) " " (lang.format_time(s.idle_expires_at)) }
                    p.hint { (Msg::SigningIdleNote.text(lang)) }
                    form method="post" action={ "/signing-session/end" (q) } {
                        button #end-signing.secondary type="submit" { (Msg::SigningEnd.text(lang)) }
                    }
                }
            } @else {
                p #signing-none.hint { (Msg::SigningNone.text(lang)) }
            }
            h1 { (Msg::MethodsTitle.text(lang)) }
            p { (Msg::MethodsLead.text(lang)) }
            div #fido
                data-lang=(lang.code())
                data-msg-cancelled=(Msg::FidoCancelled.text(lang))
                data-msg-unsupported=(Msg::FidoUnsupported.text(lang))
                data-msg-failed=(Msg::InternalError.text(lang))
                data-msg-already=(Msg::FidoAlreadyLinked.text(lang))
                data-msg-working=(Msg::Working.text(lang)) {
                div.methods {
                    // The three methods in the order doctors know them from other products;
                    // card buttons are driven by /assets/card.js, FIDO by /assets/fido.js.
                    button #card-hpki.method type="button" data-method="hpki" data-card="hpki" { (Msg::Hpki.text(lang)) }
                    @if has_fido {
                        button #fido-auth.method type="button" data-method="fido" { (Msg::Fido.text(lang)) }
                    } @else {
                        button #fido-auth.method type="button" disabled title=(Msg::FidoNeedsLink.text(lang)) data-method="fido" { (Msg::Fido.text(lang)) }
                    }
                    button #card-jpki.method type="button" data-method="jpki" data-card="jpki" { (Msg::MyNumber.text(lang)) }
                }
                // The PIN is read by /assets/card.js and sent to the local card agent only: the
                // field is outside every form, so no submit can carry it to the gateway.
                div #card
                    data-lang=(lang.code())
                    data-agent-url=(agent_url)
                    data-linked-hpki=(has_hpki)
                    data-linked-jpki=(has_jpki)
                    data-msg-not-linked=(Msg::CardNoneLinked.text(lang))
                    data-msg-agent-down=(Msg::AgentNotRunning.text(lang))
                    data-msg-no-reader=(Msg::AgentNoReader.text(lang))
                    data-msg-no-card=(Msg::AgentNoCard.text(lang))
                    data-msg-wrong-card=(Msg::AgentWrongCard.text(lang))
                    data-msg-pin-format=(Msg::AgentPinFormat.text(lang))
                    data-msg-wrong-pin=(Msg::AgentWrongPin.text(lang))
                    data-msg-tries-left=(Msg::AgentTriesLeft.text(lang))
                    data-msg-pin-locked=(Msg::AgentPinLocked.text(lang))
                    data-msg-card-removed=(Msg::AgentCardRemoved.text(lang))
                    data-msg-card-error=(Msg::AgentCardError.text(lang))
                    data-msg-origin=(Msg::AgentOriginNotAllowed.text(lang))
                    data-msg-failed=(Msg::InternalError.text(lang)) {
                    label for="card-pin" { (Msg::CardPinLabel.text(lang)) }
                    input #card-pin type="password" autocomplete="off" inputmode="text" maxlength="16" spellcheck="false";
                    p.hint { (Msg::CardPinHint.text(lang)) }
                }
                @if !has_fido { p.hint { (Msg::FidoNeedsLink.text(lang)) } }
                p #fido-status.error role="alert" aria-live="assertive" {}
                p #fido-working.notice role="status" hidden { (Msg::Working.text(lang)) }

                h2 { (Msg::Linked.text(lang)) }
                @if view.credentials.is_empty() {
                    p #linked-none { (Msg::NoneLinked.text(lang)) }
                } @else {
                    ul #linked {
                        @for c in &view.credentials {
                            li.credential data-id=(c.id) {
                                span.name { (c.name) }
                                @if c.synced { " " small.tag { (Msg::SyncedPasskey.text(lang)) } }
                                br;
                                small.meta {
                                    (Msg::CreatedAt.text(lang)) " " (lang.format_time(c.created_at)) " · "
                                    (Msg::LastUsed.text(lang)) " "
                                    @if let Some(t) = c.last_used_at { (lang.format_time(t)) } @else { (Msg::NeverUsed.text(lang)) }
                                }
                                @if c.kind == "fido" {
                                    form.inline method="post" action={ "/fido/credentials/" (c.id) "/rename" (q) } {
                                        input name="name" type="text" maxlength="64" required value=(c.name) aria-label=(Msg::Rename.text(lang));
                                        button.secondary type="submit" { (Msg::Rename.text(lang)) }
                                    }
                                    form.inline method="post" action={ "/fido/credentials/" (c.id) "/remove" (q) } {
                                        button.danger type="submit" title=(Msg::RemoveConfirmNote.text(lang)) { (Msg::Remove.text(lang)) }
                                    }
                                } @else {
                                    form.inline method="post" action={ "/auth/card/credentials/" (c.id) "/remove" (q) } {
                                        button.danger type="submit" title=(Msg::RemoveConfirmNote.text(lang)) { (Msg::Remove.text(lang)) }
                                    }
                                }
                            }
                        }
                    }
                    p.hint { (Msg::RemoveConfirmNote.text(lang)) }
                }

                h2 { (Msg::LinkTitle.text(lang)) }
                p { (Msg::LinkLead.text(lang)) }
                form #link-code-form {
                    label for="enroll-code" { (Msg::CodeLabel.text(lang)) }
                    input #enroll-code name="code" type="text" autocomplete="off" autocapitalize="characters" spellcheck="false" required placeholder="XXXX-XXXX-XXXX-XXXX-XXXX-XXXX";
                    label for="credential-name" { (Msg::CredentialNameLabel.text(lang)) }
                    input #credential-name name="name" type="text" maxlength="64" autocomplete="off";
                    button #link-code type="submit" { (Msg::LinkWithCode.text(lang)) }
                    button #link-code-hpki.secondary type="button" data-card="hpki" { (Msg::LinkCardHpki.text(lang)) }
                    button #link-code-jpki.secondary type="button" data-card="jpki" { (Msg::LinkCardJpki.text(lang)) }
                }
                @if has_fido {
                    p.hint { (Msg::LinkWithExistingLead.text(lang)) }
                    button #link-existing.secondary type="button" { (Msg::LinkWithExisting.text(lang)) }
                    p.hint { (Msg::LinkCardWithFido.text(lang)) " "
                        button #link-fido-hpki.secondary type="button" data-card="hpki" { (Msg::Hpki.text(lang)) } " "
                        button #link-fido-jpki.secondary type="button" data-card="jpki" { (Msg::MyNumber.text(lang)) }
                    }
                }
            }
            p { a #change-password-link href={ "/password?lang=" (lang.code()) } { (Msg::PasswordChangeLink.text(lang)) } }
            form method="post" action="/logout" {
                button #sign-out.secondary type="submit" { (Msg::SignOut.text(lang)) }
            }
            script src="/assets/common.js" defer {}
            script src="/assets/fido.js" defer {}
            script src="/assets/card.js" defer {}
        },
    )
}
