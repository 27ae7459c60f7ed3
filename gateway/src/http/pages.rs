//! Server-rendered pages (maud escapes every interpolation). One layout; no inline script or
//! style, so the Content-Security-Policy can stay strict.

use maud::{DOCTYPE, Markup, html};

use super::i18n::{Lang, Method, Msg};
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

/// A page with a single message (refusals and errors), in the product's layout, with a way back:
/// the start page (the login form, or the identity-check page when signed in). A refusal of this
/// device (`GateTitle`) also says whom to ask.
pub fn message(lang: Lang, title: Msg, text: &str) -> Markup {
    layout(
        lang,
        title.text(lang),
        html! {
            h1 { (title.text(lang)) }
            p.error role="alert" { (text) }
            @if title == Msg::GateTitle { p.hint { (Msg::DeviceHelp.text(lang)) } }
            p.back { a #back href={ "/?lang=" (lang.code()) } { (Msg::BackToStart.text(lang)) } }
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

/// The login page of a clinic that signs in through its EMR's OpenID Connect provider
/// (docs/design.md §3.17): a link that starts the sign-in there instead of the password form (a
/// link, not a form: `form-action 'self'` would stop a form's redirect to the provider).
pub fn login_upstream(lang: Lang, clinic_name: &str, error: Option<&str>, notice: Option<&str>) -> Markup {
    layout(
        lang,
        Msg::LoginTitle.text(lang),
        html! {
            h1 { (Msg::LoginTitle.text(lang)) }
            p.clinic { (Msg::Clinic.text(lang)) "：" (clinic_name) }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            p { (Msg::LoginLeadUpstream.text(lang)) }
            p { a #upstream-login .button href={ "/login/oidc?lang=" (lang.code()) } { (Msg::LoginWithEmr.text(lang)) } }
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

/// A linked authenticator as the pages list it.
#[derive(Debug, Clone)]
pub struct LinkedView {
    /// `fido_credentials.id` or `card_credentials.id`.
    pub id: String,
    /// What kind of authenticator it is.
    pub kind: Method,
    /// Name the doctor gave it (or the one given when it was linked).
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_used_at: Option<i64>,
    /// A synced passkey.
    pub synced: bool,
}

impl LinkedView {
    /// The name as `lang` reads it. Names given at linking ("マイナンバーカード 1",
    /// "FIDO authenticator 2": the kind and a number, in the language of that page) are shown
    /// in `lang`; a name the doctor chose is shown as typed.
    pub fn display_name(&self, lang: Lang) -> String {
        let base = self.kind.name();
        let given = [Lang::Ja, Lang::En].into_iter().find_map(|l| {
            let number = self.name.strip_prefix(base.text(l))?.strip_prefix(' ')?;
            (!number.is_empty() && number.chars().all(|c| c.is_ascii_digit())).then_some(number)
        });
        // FIDO authenticators linked before the kind was named 「FIDO認証器」 in both places.
        let given = given.or_else(|| {
            [Lang::Ja, Lang::En].into_iter().find_map(|l| {
                let number = self.name.strip_prefix(Msg::DefaultCredentialName.text(l))?.strip_prefix(' ')?;
                (self.kind == Method::Fido && number.chars().all(|c| c.is_ascii_digit()) && !number.is_empty()).then_some(number)
            })
        });
        match given {
            Some(number) => format!("{} {number}", base.text(lang)),
            None => self.name.clone(),
        }
    }
}

/// The live signing session, as the identity-check page shows it.
#[derive(Debug, Clone, Copy)]
pub struct SigningView {
    /// Absolute expiry (Unix seconds).
    pub expires_at: i64,
    /// When it ends if idle (Unix seconds).
    pub idle_expires_at: i64,
}

/// What the two pages of a signed-in doctor show besides their controls.
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
    /// The clinic signs in with the gateway's password form (not through its EMR's provider),
    /// so the password-change link is shown.
    pub password_here: bool,
}

impl MethodsView<'_> {
    fn has(&self, kind: Method) -> bool {
        self.credentials.iter().any(|c| c.kind == kind)
    }
}

/// Where the pages' scripts run: the card agent's address and the gateway's own origin (which the
/// agent must allow).
#[derive(Debug, Clone, Copy)]
pub struct AgentView<'a> {
    /// The card agent's origin on this PC (`card.agent_url`).
    pub url: &'a str,
    /// This gateway's public origin, as the agent's `--allow-origin` must name it.
    pub gateway_origin: &'a str,
}

/// A time that never wraps in the middle (narrow screens).
fn when(lang: Lang, unix: i64) -> Markup {
    html! { span.nowrap { (lang.format_time(unix)) } }
}

/// The status line and working indicator the scripts write to.
fn status_lines(lang: Lang) -> Markup {
    html! {
        p #fido-status.error role="alert" aria-live="assertive" {}
        p #fido-working.notice role="status" hidden { (Msg::Working.text(lang)) }
    }
}

/// The card PIN field with the messages `/assets/card.js` may show (`data-msg-*`, so all text
/// stays in [`Msg`]). The PIN is read by the script and sent to the local card agent only: the
/// field is outside every form, so no submit can carry it to the gateway.
fn card_pin(lang: Lang, agent: AgentView<'_>, view: &MethodsView<'_>) -> Markup {
    let origin_msg = Msg::AgentOriginRefused.text(lang).replace("{origin}", agent.gateway_origin);
    html! {
        div #card
            data-lang=(lang.code())
            data-agent-url=(agent.url)
            data-linked-hpki=(view.has(Method::Hpki))
            data-linked-jpki=(view.has(Method::Jpki))
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
            data-msg-origin=(origin_msg)
            data-msg-failed=(Msg::InternalError.text(lang)) {
            label for="card-pin" { (Msg::CardPinLabel.text(lang)) }
            input #card-pin type="password" autocomplete="off" inputmode="text" maxlength="16" spellcheck="false";
            p.hint { (Msg::CardPinHint.text(lang)) }
        }
    }
}

/// The FIDO script's root with its messages.
fn fido_root(lang: Lang, body: Markup) -> Markup {
    html! {
        div #fido
            data-lang=(lang.code())
            data-msg-cancelled=(Msg::FidoCancelled.text(lang))
            data-msg-unsupported=(Msg::FidoUnsupported.text(lang))
            data-msg-failed=(Msg::InternalError.text(lang))
            data-msg-already=(Msg::FidoAlreadyLinked.text(lang))
            data-msg-working=(Msg::Working.text(lang)) {
            (body)
        }
    }
}

/// Who is signed in, and the notice or refusal of the last step.
fn header_lines(lang: Lang, clinic_name: &str, user: &User, view: &MethodsView<'_>) -> Markup {
    html! {
        p.who { (Msg::SignedInAs.text(lang)) " " (user.name) "（" (clinic_name) "）" }
        @if let Some(n) = view.notice { p.notice role="status" { (n) } }
        @if let Some(e) = view.error { p.error role="alert" { (e) } }
    }
}

/// Password change and sign-out, at the foot of both pages.
fn foot(lang: Lang, other_page: Markup, password_here: bool) -> Markup {
    html! {
        nav.foot {
            p { (other_page) }
            @if password_here {
                p { a #change-password-link href={ "/password?lang=" (lang.code()) } { (Msg::PasswordChangeLink.text(lang)) } }
            }
        }
        form method="post" action={ "/logout?lang=" (lang.code()) } {
            button #sign-out.secondary type="submit" { (Msg::SignOut.text(lang)) }
        }
        script src="/assets/common.js" defer {}
        script src="/assets/fido.js" defer {}
        script src="/assets/card.js" defer {}
    }
}

/// 「本人確認」, the daily page: the signing session's state with its end button, the card
/// reminder, the PIN field, then the three method buttons (HPKI card, FIDO, My Number card). All
/// set-up lives on [`manage`].
pub fn methods(lang: Lang, clinic_name: &str, user: &User, agent: AgentView<'_>, view: &MethodsView<'_>) -> Markup {
    let q = format!("?lang={}", lang.code());
    let has_fido = view.has(Method::Fido);
    layout(
        lang,
        Msg::VerifyTitle.text(lang),
        html! {
            (header_lines(lang, clinic_name, user, view))
            h1 { (Msg::VerifyTitle.text(lang)) }
            @if let Some(s) = view.signing {
                section #signing-session.signed-in {
                    h2 #signing-state { (Msg::SigningActive.text(lang)) }
                    p { (Msg::SigningExpiresAt.text(lang)) " " time #signing-expires { (when(lang, s.expires_at)) } }
                    p { (Msg::SigningIdleAt.text(lang)) " " (when(lang, s.idle_expires_at)) }
                    p.hint { (Msg::SigningIdleNote.text(lang)) }
                    form method="post" action={ "/signing-session/end" (q) } {
                        button #end-signing.secondary type="submit" { (Msg::SigningEnd.text(lang)) }
                    }
                }
            } @else {
                p #signing-none.hint { (Msg::SigningNone.text(lang)) }
            }
            @if view.credentials.is_empty() {
                p #verify-none.error { (Msg::VerifyNoneLinked.text(lang)) " "
                    a href={ "/manage" (q) } { (Msg::ManageTitle.text(lang)) } }
            }
            p { (Msg::VerifyLead.text(lang)) }
            (fido_root(lang, html! {
                p #card-reminder.reminder { (Msg::CardReminder.text(lang)) }
                (card_pin(lang, agent, view))
                div.methods {
                    // The seed's order; card buttons are driven by /assets/card.js, FIDO by /assets/fido.js.
                    button #card-hpki.method type="button" data-method="hpki" data-card="hpki" { (Msg::Hpki.text(lang)) }
                    @if has_fido {
                        button #fido-auth.method type="button" data-method="fido" { (Msg::Fido.text(lang)) }
                    } @else {
                        button #fido-auth.method type="button" disabled title=(Msg::FidoNeedsLink.text(lang)) data-method="fido" { (Msg::Fido.text(lang)) }
                    }
                    button #card-jpki.method type="button" data-method="jpki" data-card="jpki" { (Msg::MyNumber.text(lang)) }
                }
                (status_lines(lang))
            }))
            (foot(lang, html! { a #manage-link href={ "/manage" (q) } { (Msg::ManageLink.text(lang)) } }, view.password_here))
        },
    )
}

/// 「認証手段の管理」, the one-time page: the linked authenticators (rename, remove), linking with
/// a registration code (one code field, then the kind), and adding another after confirming with
/// a linked authenticator of any kind (FIDO, or a card with its PIN). Without any linked authenticator it explains what to do first.
pub fn manage(lang: Lang, clinic_name: &str, user: &User, agent: AgentView<'_>, view: &MethodsView<'_>) -> Markup {
    let q = format!("?lang={}", lang.code());
    layout(
        lang,
        Msg::ManageTitle.text(lang),
        html! {
            (header_lines(lang, clinic_name, user, view))
            h1 { (Msg::ManageTitle.text(lang)) }
            @if view.credentials.is_empty() {
                p #manage-first.reminder { (Msg::ManageNoneLead.text(lang)) }
            } @else {
                p { (Msg::ManageLead.text(lang)) }
            }
            (fido_root(lang, html! {
                h2 { (Msg::Linked.text(lang)) }
                @if view.credentials.is_empty() {
                    p #linked-none { (Msg::NoneLinked.text(lang)) }
                } @else {
                    ul #linked {
                        @for c in &view.credentials {
                            li.credential data-id=(c.id) data-kind=(c.kind.code()) {
                                span.name { (c.display_name(lang)) }
                                " " small.tag { (c.kind.name().text(lang)) }
                                @if c.synced { " " small.tag { (Msg::SyncedPasskey.text(lang)) } }
                                br;
                                small.meta {
                                    (Msg::CreatedAt.text(lang)) " " (when(lang, c.created_at)) " · "
                                    (Msg::LastUsed.text(lang)) " "
                                    @if let Some(t) = c.last_used_at { (when(lang, t)) } @else { (Msg::NeverUsed.text(lang)) }
                                }
                                @let base = if c.kind == Method::Fido { "/fido/credentials/" } else { "/auth/card/credentials/" };
                                form.inline method="post" action={ (base) (c.id) "/rename" (q) } {
                                    input name="name" type="text" maxlength="64" required value=(c.display_name(lang)) aria-label=(Msg::Rename.text(lang));
                                    button.secondary type="submit" { (Msg::Rename.text(lang)) }
                                }
                                form.inline method="post" action={ (base) (c.id) "/remove" (q) } {
                                    button.danger type="submit" title=(Msg::RemoveConfirmNote.text(lang)) { (Msg::Remove.text(lang)) }
                                }
                            }
                        }
                    }
                    p.hint { (Msg::RemoveConfirmNote.text(lang)) }
                }

                h2 { (Msg::LinkCodeTitle.text(lang)) }
                p { (Msg::LinkCodeLead.text(lang)) }
                form #link-code-form {
                    label for="enroll-code" { (Msg::CodeLabel.text(lang)) }
                    input #enroll-code name="code" type="text" autocomplete="off" autocapitalize="characters" spellcheck="false" required placeholder="XXXX-XXXX-XXXX-XXXX-XXXX-XXXX";
                    label for="credential-name" { (Msg::CredentialNameLabel.text(lang)) }
                    input #credential-name name="name" type="text" maxlength="64" autocomplete="off";
                }
                // Outside the form, like on the daily page (the PIN must never be submitted).
                (card_pin(lang, agent, view))
                p.kind-label { (Msg::LinkKindLabel.text(lang)) }
                div.methods {
                    button #link-code-hpki.method type="button" data-card="hpki" { (Msg::Hpki.text(lang)) }
                    button #link-code.method type="submit" form="link-code-form" { (Msg::FidoAuthenticator.text(lang)) }
                    button #link-code-jpki.method type="button" data-card="jpki" { (Msg::MyNumber.text(lang)) }
                }
                (status_lines(lang))
                @if !view.credentials.is_empty() {
                    section #link-existing-section {
                        h2 { (Msg::LinkExistingTitle.text(lang)) }
                        p.hint { (Msg::LinkWithExistingLead.text(lang)) }
                        label for="confirm-with" { (Msg::ConfirmWithLabel.text(lang)) }
                        // A linked FIDO authenticator first (no PIN to type), else a linked card.
                        select #confirm-with {
                            @for m in [Method::Fido, Method::Hpki, Method::Jpki] {
                                @if view.has(m) { option value=(m.code()) { (m.name().text(lang)) } }
                            }
                        }
                        p.kind-label { (Msg::LinkKindLabel.text(lang)) }
                        div.methods {
                            button #link-existing-hpki.secondary type="button" data-card="hpki" data-add="hpki" { (Msg::Hpki.text(lang)) }
                            button #link-existing.secondary type="button" data-add="fido" { (Msg::FidoAuthenticator.text(lang)) }
                            button #link-existing-jpki.secondary type="button" data-card="jpki" data-add="jpki" { (Msg::MyNumber.text(lang)) }
                        }
                        // After confirming with a card, the card to add goes on the reader (card.js).
                        p #confirm-swap.reminder hidden { (Msg::ConfirmSwapCard.text(lang)) }
                        button #confirm-continue.method type="button" hidden { (Msg::ConfirmContinue.text(lang)) }
                    }
                }
            }))
            (foot(lang, html! { a #verify-link href={ "/methods" (q) } { (Msg::VerifyLink.text(lang)) } }, view.password_here))
        },
    )
}
