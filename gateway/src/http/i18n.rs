//! Japanese-first user interface text. Every message a person sees exists in Japanese and
//! English; the language comes from `?lang=`, then the `lang` cookie, then `Accept-Language`.
//!
//! Longer than most files on purpose: it is the message catalogue, every text in both languages
//! side by side, so a translator reviews one file and a missing language is visible at a glance.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use time::{OffsetDateTime, UtcOffset};

/// A UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// 日本語 (default).
    #[default]
    Ja,
    /// English.
    En,
}

impl Lang {
    /// `ja` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    /// The other language (for the switch link).
    pub fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    fn parse(s: &str) -> Option<Lang> {
        match s.trim().get(..2)?.to_ascii_lowercase().as_str() {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// Picks the language of a request.
    pub fn from_request(headers: &HeaderMap, query: Option<&str>) -> Lang {
        let from_query = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "lang").and_then(|(_, v)| Lang::parse(&v))
        });
        let from_cookie = || Lang::from_cookie(headers);
        // Accept-Language: the first supported tag in the client's order of preference.
        let from_accept = || {
            headers
                .get(axum::http::header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').find_map(|tag| Lang::parse(tag.split(';').next().unwrap_or(""))))
        };
        from_query.or_else(from_cookie).or_else(from_accept).unwrap_or_default()
    }

    /// The language kept in the `lang` cookie, if any.
    fn from_cookie(headers: &HeaderMap) -> Option<Lang> {
        headers.get_all(axum::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
            c.split(';').find_map(|kv| kv.trim().strip_prefix("lang=").and_then(Lang::parse))
        })
    }

    /// A time as doctors read it: Japan Standard Time.
    pub fn format_time(self, unix: i64) -> String {
        let jst = UtcOffset::from_hms(9, 0, 0).unwrap_or(UtcOffset::UTC);
        let t = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH).to_offset(jst);
        let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
        let text = t.format(fmt).unwrap_or_default();
        match self {
            Lang::Ja => format!("{text}（日本時間）"),
            Lang::En => format!("{text} JST"),
        }
    }
}

/// Name of the cookie that keeps the language choice.
pub const LANG_COOKIE: &str = "lang";

/// Middleware of the browser routes: keeps the language chosen with `?lang=` in a cookie, so it
/// holds across forms that post without it (the login form), refusals and redirects; and shows
/// the error pages rendered without a language ([`super::error::ErrorPage`]) in the request's.
pub async fn keep_language(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let lang = Lang::from_request(req.headers(), req.uri().query());
    // Only a page visit chooses (the language link, a redirect's address); the scripts' POSTs
    // carry the page's language along without choosing anew.
    let visit = req.method() == axum::http::Method::GET;
    let chosen = req.uri().query().filter(|_| visit).and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "lang").and_then(|(_, v)| Lang::parse(&v))
    });
    let cookie = Lang::from_cookie(req.headers());
    let mut res = next.run(req).await;
    if let Some(super::error::ErrorPage(r)) = res.extensions().get::<super::error::ErrorPage>().cloned() {
        // An outage page keeps both languages, as rendered (the doctor may be reading either).
        let text = match r {
            super::refusal::Refusal::Unavailable => format!("{} {}", r.message(Lang::Ja), r.message(Lang::En)),
            _ => r.message(lang),
        };
        let page = super::pages::message(lang, r.title(), &text);
        let (mut parts, _) = res.into_parts();
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        res = (parts, page).into_response();
    }
    if let Some(chosen) = chosen.filter(|&c| cookie != Some(c)) {
        // Not a secret, so readable by the page; a year, then the browser's language again.
        let value = format!("{LANG_COOKIE}={}; Path=/; Max-Age=31536000; Secure; SameSite=Lax", chosen.code());
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            res.headers_mut().append(axum::http::header::SET_COOKIE, v);
        }
    }
    res
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::from_request(&parts.headers, parts.uri.query()))
    }
}

/// The three ways a doctor proves presence, in the order the pages list them (the seed's order:
/// HPKI card, FIDO, My Number card).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// HPKI card.
    Hpki,
    /// A FIDO authenticator (passkey or security key).
    Fido,
    /// My Number card (JPKI).
    Jpki,
}

impl Method {
    /// `hpki`, `fido` or `jpki` (the store's and the pages' name).
    pub fn code(self) -> &'static str {
        match self {
            Method::Hpki => "hpki",
            Method::Fido => "fido",
            Method::Jpki => "jpki",
        }
    }

    /// The method's name on the pages (HPKIカード, FIDO認証器, マイナンバーカード).
    pub fn name(self) -> Msg {
        match self {
            Method::Hpki => Msg::Hpki,
            Method::Fido => Msg::FidoAuthenticator,
            Method::Jpki => Msg::MyNumber,
        }
    }
}

/// What a finished step tells the doctor, per method and outcome: the one table of the pages'
/// success notices. It travels as `?done=<code>` to the page the step returns to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// A signing session was opened with this method.
    Authenticated(Method),
    /// An authenticator of this kind was linked.
    Linked(Method),
    /// An authenticator of this kind was renamed.
    Renamed(Method),
    /// An authenticator of this kind was removed.
    Removed(Method),
    /// The doctor ended the signing session.
    Ended,
    /// The doctor changed the password.
    Password,
}

impl Done {
    /// Every notice (tests walk it).
    pub const ALL: [Done; 13] = [
        Done::Authenticated(Method::Hpki),
        Done::Authenticated(Method::Fido),
        Done::Authenticated(Method::Jpki),
        Done::Linked(Method::Hpki),
        Done::Linked(Method::Fido),
        Done::Linked(Method::Jpki),
        Done::Renamed(Method::Hpki),
        Done::Renamed(Method::Fido),
        Done::Renamed(Method::Jpki),
        Done::Removed(Method::Hpki),
        Done::Removed(Method::Fido),
        Done::Removed(Method::Jpki),
        Done::Ended,
    ];

    /// The `done` value in the address.
    pub fn code(self) -> &'static str {
        match self {
            Done::Authenticated(Method::Hpki) => "authenticated_hpki",
            Done::Authenticated(Method::Fido) => "authenticated_fido",
            Done::Authenticated(Method::Jpki) => "authenticated_jpki",
            Done::Linked(Method::Hpki) => "linked_hpki",
            Done::Linked(Method::Fido) => "linked_fido",
            Done::Linked(Method::Jpki) => "linked_jpki",
            Done::Renamed(Method::Hpki) => "renamed_hpki",
            Done::Renamed(Method::Fido) => "renamed_fido",
            Done::Renamed(Method::Jpki) => "renamed_jpki",
            Done::Removed(Method::Hpki) => "removed_hpki",
            Done::Removed(Method::Fido) => "removed_fido",
            Done::Removed(Method::Jpki) => "removed_jpki",
            Done::Ended => "ended",
            Done::Password => "password",
        }
    }

    /// The notice named by a `done` value; `None` for anything else (shown as no notice).
    pub fn parse(code: &str) -> Option<Done> {
        Done::ALL.into_iter().chain([Done::Password]).find(|d| d.code() == code)
    }

    /// The page the step returns to: set-up steps to the management page, the daily ones to
    /// the identity-check page.
    pub fn page(self) -> &'static str {
        match self {
            Done::Linked(_) | Done::Renamed(_) | Done::Removed(_) => "/manage",
            Done::Authenticated(_) | Done::Ended | Done::Password => "/methods",
        }
    }

    /// Where the browser goes after the step (the language stays in the address as well as in
    /// the `lang` cookie).
    pub fn location(self, lang: Lang) -> String {
        format!("{}?done={}&lang={}", self.page(), self.code(), lang.code())
    }

    /// The notice in `lang`.
    pub fn text(self, lang: Lang) -> &'static str {
        let (ja, en) = match self {
            Done::Authenticated(Method::Hpki) => (
                "HPKIカードで本人確認しました。署名セッションを開始しました。",
                "Verified with your HPKI card. Your signing session has started.",
            ),
            Done::Authenticated(Method::Fido) => (
                "FIDO認証器で本人確認しました。署名セッションを開始しました。",
                "Verified with your FIDO authenticator. Your signing session has started.",
            ),
            Done::Authenticated(Method::Jpki) => (
                "マイナンバーカードで本人確認しました。署名セッションを開始しました。",
                "Verified with your My Number card. Your signing session has started.",
            ),
            Done::Linked(Method::Hpki) => ("HPKIカードを登録しました。", "Your HPKI card was linked."),
            Done::Linked(Method::Fido) => ("FIDO認証器を登録しました。", "The FIDO authenticator was linked."),
            Done::Linked(Method::Jpki) => ("マイナンバーカードを登録しました。", "Your My Number card was linked."),
            Done::Renamed(Method::Hpki) => ("HPKIカードの名前を変更しました。", "The HPKI card was renamed."),
            Done::Renamed(Method::Fido) => ("FIDO認証器の名前を変更しました。", "The FIDO authenticator was renamed."),
            Done::Renamed(Method::Jpki) => ("マイナンバーカードの名前を変更しました。", "The My Number card was renamed."),
            Done::Removed(Method::Hpki) => ("HPKIカードの登録を削除しました。", "The HPKI card was removed."),
            Done::Removed(Method::Fido) => ("FIDO認証器を削除しました。", "The FIDO authenticator was removed."),
            Done::Removed(Method::Jpki) => ("マイナンバーカードの登録を削除しました。", "The My Number card was removed."),
            Done::Ended => ("署名セッションを終了しました。", "The signing session has ended."),
            Done::Password => ("パスワードを変更しました。", "Your password has been changed."),
        };
        match lang {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }
}

/// Every fixed message of the browser UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Msg {
    ProductName,
    LoginTitle,
    LoginLead,
    LoginId,
    Password,
    SignIn,
    InvalidCredentials,
    LoginLocked,
    DoctorOnly,
    MissingFields,
    MethodsTitle,
    MethodsLead,
    Hpki,
    Fido,
    MyNumber,
    MethodNotReady,
    Linked,
    NoneLinked,
    SignOut,
    SignedInAs,
    Clinic,
    GateTitle,
    CertNotRegistered,
    CertRevoked,
    ClinicDisabled,
    BadOrigin,
    ErrorTitle,
    InternalError,
    Unavailable,
    NotFound,
    BodyTooLarge,
    BodyTimeout,
    BodyIncomplete,
    SignedOut,
    // FIDO and signing sessions.
    FidoNeedsLink,
    FidoCancelled,
    FidoUnsupported,
    FidoFailed,
    FidoUnknownCredential,
    FidoOtherDoctor,
    FidoCounterRegression,
    FidoPolicyRefused,
    FidoUserNotVerified,
    FidoAlreadyLinked,
    FidoNoCredentials,
    FidoCeremonyMissing,
    FidoBadRequest,
    LoginRequiredJson,
    CodeMalformed,
    CodeWrong,
    CodeTriesLeft,
    CodeExpired,
    CodeUsedUp,
    LinkTitle,
    LinkLead,
    CodeLabel,
    CredentialNameLabel,
    LinkWithCode,
    LinkWithExisting,
    LinkWithExistingLead,
    Rename,
    Remove,
    RemoveConfirmNote,
    CreatedAt,
    LastUsed,
    NeverUsed,
    SyncedPasskey,
    DefaultCredentialName,
    CredentialNameInvalid,
    CredentialNotFound,
    SigningActive,
    SigningExpiresAt,
    SigningIdleAt,
    SigningIdleNote,
    SigningEnd,
    SigningNone,
    Working,
    // Card login.
    CardBadRequest,
    CardNoneLinked,
    CardLinkNeedsCode,
    CardChallengeMissing,
    CardChallengeExpired,
    CardResponseInvalid,
    CardBadSignature,
    CardWrongKind,
    CardExpired,
    CardNotYetValid,
    CardRevoked,
    CardRevocationUnavailable,
    CardUntrusted,
    CardNotDoctor,
    CardUnusable,
    CardSigningCertificate,
    CardPolicyNotAllowed,
    CardNotLinked,
    CardOtherDoctor,
    CardAlreadyLinked,
    CardLinkedToOther,
    CardNoRoleNeedsCode,
    CardPinLabel,
    CardPinHint,
    LinkCardHpki,
    LinkCardJpki,
    LinkCardWithFido,
    AgentNotRunning,
    AgentNoReader,
    AgentNoCard,
    AgentWrongCard,
    AgentPinFormat,
    AgentWrongPin,
    AgentTriesLeft,
    AgentPinLocked,
    AgentCardRemoved,
    AgentCardError,
    AgentOriginNotAllowed,
    // The two pages (issue 24).
    FidoAuthenticator,
    VerifyTitle,
    VerifyLead,
    VerifyNoneLinked,
    CardReminder,
    ManageTitle,
    ManageLink,
    ManageLead,
    ManageNoneLead,
    VerifyLink,
    LinkCodeTitle,
    LinkCodeLead,
    LinkKindLabel,
    LinkExistingTitle,
    ConfirmWithLabel,
    ConfirmSwapCard,
    ConfirmContinue,
    AgentOriginRefused,
    LoginTriesLeft,
    LoginLockedUnlock,
    BackToStart,
    BackToLogin,
    DeviceHelp,
    // Re-authentication before changing authenticators (issue 15).
    ReauthRequired,
    // Choosing a new password.
    PasswordChangeTitle,
    PasswordChangeLead,
    PasswordChangeLeadVoluntary,
    PasswordCurrentNote,
    PasswordCurrent,
    PasswordCurrentWrong,
    PasswordContext,
    PasswordChangeLink,
    TemporaryPasswordExpired,
    PasswordNew,
    PasswordConfirm,
    PasswordRule,
    PasswordChangeSubmit,
    PasswordTooShortOrLong,
    PasswordCommon,
    PasswordPersonal,
    PasswordGuessable,
    PasswordSameAsOld,
    PasswordMismatch,
    PasswordChangedMeanwhile,
    // Upstream sign-in (docs/design.md §3.17).
    LoginWithEmr,
    LoginLeadUpstream,
    UpstreamNotConfigured,
    PasswordLoginOff,
    UpstreamFlowUnknown,
    UpstreamFlowMismatch,
    UpstreamFlowExpired,
    UpstreamProviderError,
    UpstreamUnavailable,
    UpstreamTokenRefused,
    UpstreamIdTokenInvalid,
    UpstreamIdTokenExpired,
    UpstreamNonceMismatch,
    UpstreamUnknownUser,
    UpstreamUserDisabled,
}

impl Msg {
    /// The message in `lang`.
    pub fn text(self, lang: Lang) -> &'static str {
        use Msg::*;
        let (ja, en) = match self {
            ProductName => ("電子処方箋 認証ゲートウェイ", "E-prescription authentication gateway"),
            LoginTitle => ("ログイン", "Sign in"),
            LoginLead => (
                "電子カルテのログインIDとパスワードを入力してください。",
                "Enter your EMR login ID and password.",
            ),
            LoginId => ("ログインID", "Login ID"),
            Password => ("パスワード", "Password"),
            SignIn => ("ログイン", "Sign in"),
            InvalidCredentials => (
                "ログインIDまたはパスワードが正しくありません。",
                "The login ID or password is incorrect.",
            ),
            LoginLocked => (
                "ログインに続けて失敗したため、このログインIDはロックされています。次の時刻以降に再度お試しください：",
                "Too many failed sign-in attempts: this login ID is locked. Try again after",
            ),
            DoctorOnly => (
                "電子処方箋の認証を行えるのはユーザ区分が医師のユーザのみです",
                "Only users of type doctor can authenticate for electronic prescriptions.",
            ),
            MissingFields => ("ログインIDとパスワードを入力してください。", "Enter both login ID and password."),
            MethodsTitle => ("認証方法の選択", "Choose how to authenticate"),
            MethodsLead => (
                "電子署名のため、本人確認の方法を選んでください。",
                "To sign prescriptions, confirm that it is you with one of these methods.",
            ),
            Hpki => ("HPKIカード", "HPKI card"),
            Fido => ("FIDO認証", "FIDO"),
            MyNumber => ("マイナンバーカード", "My Number card"),
            MethodNotReady => (
                "この認証方法はこのゲートウェイではまだ有効になっていません。",
                "This method is not enabled on this gateway yet.",
            ),
            Linked => ("登録済みの認証手段", "Linked authenticators"),
            NoneLinked => ("まだ登録されていません。", "None linked yet."),
            SignOut => ("ログアウト", "Sign out"),
            SignedInAs => ("ログイン中：", "Signed in as"),
            Clinic => ("医療機関", "Clinic"),
            GateTitle => ("この端末からは利用できません", "This device cannot use the gateway"),
            CertNotRegistered => (
                "この端末のクライアント証明書は登録されていません。証明書の配置を運用担当者に依頼してください。",
                "This device's client certificate is not registered. Ask your operator to register it.",
            ),
            CertRevoked => (
                "この端末のクライアント証明書は無効化されています。",
                "This device's client certificate has been revoked.",
            ),
            ClinicDisabled => (
                "この医療機関は現在ゲートウェイを利用できません。",
                "This clinic is currently disabled on the gateway.",
            ),
            BadOrigin => (
                "このページ以外から送信されたため、リクエストを拒否しました。",
                "The request was refused because it did not come from this site.",
            ),
            ErrorTitle => ("エラー", "Error"),
            Unavailable => (
                "ただいまデータベースに接続できません。少し時間をおいて再度お試しください。",
                "The service cannot reach its database right now. Please try again in a moment.",
            ),
            InternalError => (
                "内部エラーが発生しました。時間をおいて再度お試しください。",
                "Something went wrong on our side. Please try again later.",
            ),
            NotFound => ("ページが見つかりません。", "Page not found."),
            BodyTooLarge => (
                "送信されたデータが大きすぎるため、受け付けられません。",
                "The request was refused because its body is too large.",
            ),
            LoginWithEmr => (
                "EMRのアカウントでログイン",
                "Sign in with your EMR account",
            ),
            LoginLeadUpstream => (
                "このクリニックでは、電子カルテ（EMR）のアカウントでログインします。ボタンを押すと電子カルテのログイン画面に移ります。",
                "This clinic signs in with your EMR account. The button takes you to the EMR's sign-in page.",
            ),
            UpstreamNotConfigured => (
                "このクリニックは電子カルテのアカウントによるログインを使用していません。ログインIDとパスワードでログインしてください。",
                "This clinic does not sign in through the EMR. Sign in with your login ID and password.",
            ),
            PasswordLoginOff => (
                "このクリニックでは、パスワードではなく電子カルテのアカウントでログインします。",
                "This clinic signs in with your EMR account, not with a password here.",
            ),
            UpstreamFlowUnknown => (
                "ログインの手続きが見つかりません（使用済みか、別の画面で開始されたものです）。もう一度ログインしてください。",
                "This sign-in could not be found (it was used already or started elsewhere). Please sign in again.",
            ),
            UpstreamFlowMismatch => (
                "このログインの手続きは別のブラウザまたは端末で開始されたものです。もう一度ログインしてください。",
                "This sign-in was started in another browser or on another device. Please sign in again.",
            ),
            UpstreamFlowExpired => (
                "ログインの手続きの有効期限が切れました。もう一度ログインしてください。",
                "The sign-in took too long and has expired. Please sign in again.",
            ),
            UpstreamProviderError => (
                "電子カルテ側でログインが完了しませんでした（取り消しまたは拒否）。もう一度お試しください。",
                "The EMR did not complete the sign-in (cancelled or refused). Please try again.",
            ),
            UpstreamUnavailable => (
                "電子カルテのログインサービスに接続できません。しばらくしてから再度お試しください。",
                "The EMR's sign-in service cannot be reached. Please try again later.",
            ),
            UpstreamTokenRefused => (
                "電子カルテがログインを確認できませんでした（使用済みまたは無効な認可コード）。もう一度ログインしてください。",
                "The EMR could not confirm the sign-in (the authorization code was used or is invalid). Please sign in again.",
            ),
            UpstreamIdTokenInvalid => (
                "電子カルテから受け取ったログイン情報を検証できませんでした。管理者にお問い合わせください。",
                "The sign-in information from the EMR could not be verified. Please contact your administrator.",
            ),
            UpstreamIdTokenExpired => (
                "電子カルテから受け取ったログイン情報の有効期限が切れています。もう一度ログインしてください。",
                "The sign-in information from the EMR has expired. Please sign in again.",
            ),
            UpstreamNonceMismatch => (
                "電子カルテから受け取ったログイン情報は、このログインの手続きのものではありません。もう一度ログインしてください。",
                "The sign-in information from the EMR does not belong to this sign-in. Please sign in again.",
            ),
            UpstreamUnknownUser => (
                "この電子カルテのアカウントは、このゲートウェイに登録されていません。管理者にお問い合わせください。",
                "This EMR account is not registered with this gateway. Please contact your administrator.",
            ),
            UpstreamUserDisabled => (
                "このアカウントは無効になっています。管理者にお問い合わせください。",
                "This account is disabled. Please contact your administrator.",
            ),
            BodyTimeout => (
                "データの受信が時間内に終わらなかったため、リクエストを打ち切りました。",
                "The request was refused because its body did not arrive in time.",
            ),
            BodyIncomplete => (
                "送信されたデータを最後まで受信できませんでした。",
                "The request body could not be read to the end.",
            ),
            SignedOut => ("ログアウトしました。", "You have signed out."),
            FidoNeedsLink => (
                "FIDO認証を使うには、先に下の「FIDO認証器の登録」で認証器を登録してください。",
                "To use FIDO, first link an authenticator below.",
            ),
            FidoCancelled => (
                "認証器の操作がキャンセルされたか、時間切れになりました。もう一度お試しください。",
                "The authenticator operation was cancelled or timed out. Please try again.",
            ),
            FidoUnsupported => (
                "このブラウザはFIDO認証（WebAuthn）に対応していません。",
                "This browser does not support FIDO (WebAuthn).",
            ),
            FidoFailed => (
                "FIDO認証に失敗しました。もう一度お試しください。",
                "FIDO authentication failed. Please try again.",
            ),
            FidoUnknownCredential => (
                "この認証器は登録されていません。登録済みの認証器を使うか、先に登録してください。",
                "This authenticator is not linked. Use a linked authenticator or link this one first.",
            ),
            FidoOtherDoctor => (
                "この認証器は別の医師のアカウントに登録されています。ご自身の認証器を使ってください。",
                "This authenticator is linked to another doctor's account. Use your own authenticator.",
            ),
            FidoCounterRegression => (
                "認証器の署名カウンタが前回より進んでいません。認証器が複製された可能性があるため利用できません。運用担当者に連絡してください。",
                "The authenticator's signature counter did not increase, which may mean it was cloned. It cannot be used; contact your operator.",
            ),
            FidoPolicyRefused => (
                "この認証器は、このゲートウェイの運用ポリシーにより利用できません。運用担当者に確認してください。",
                "This authenticator is not accepted by this gateway's policy. Ask your operator.",
            ),
            FidoUserNotVerified => (
                "認証器でのPINまたは生体認証による本人確認が必要です。",
                "The authenticator must verify you with a PIN or biometrics.",
            ),
            FidoAlreadyLinked => ("この認証器はすでに登録されています。", "This authenticator is already linked."),
            FidoNoCredentials => (
                "FIDO認証器が登録されていません。先に登録してください。",
                "No FIDO authenticator is linked yet. Link one first.",
            ),
            FidoCeremonyMissing => (
                "この操作は期限切れか、すでに完了しています。最初からやり直してください。",
                "This operation has expired or was already completed. Please start again.",
            ),
            FidoBadRequest => ("リクエストの形式が正しくありません。", "The request is malformed."),
            LoginRequiredJson => (
                "ログインの有効期限が切れました。もう一度ログインしてください。",
                "Your sign-in has expired. Please sign in again.",
            ),
            CodeMalformed => (
                "登録コードは24文字（4文字ずつ6組）です。入力内容を確認してください。",
                "A registration code has 24 characters (six groups of four). Please check what you entered.",
            ),
            CodeWrong => ("登録コードが正しくありません。", "The registration code is not correct."),
            CodeTriesLeft => ("残り入力可能回数：", "Tries left:"),
            CodeExpired => (
                "登録コードの有効期限が切れています。運用担当者に新しいコードの発行を依頼してください。",
                "The registration code has expired. Ask your operator for a new one.",
            ),
            CodeUsedUp => (
                "この登録コードは使用済みか、誤入力が多すぎたため無効になっています。運用担当者に新しいコードの発行を依頼してください。",
                "This registration code was already used or has been voided after too many wrong entries. Ask your operator for a new one.",
            ),
            LinkTitle => ("FIDO認証器の登録", "Link a FIDO authenticator"),
            LinkLead => (
                "運用担当者から受け取った登録コードを入力し、パスキーまたはセキュリティキーを登録します。",
                "Enter the registration code from your operator, then register a passkey or security key.",
            ),
            CodeLabel => ("登録コード", "Registration code"),
            CredentialNameLabel => ("認証器の名前（任意）", "Name for the authenticator (optional)"),
            LinkWithCode => ("登録コードで登録", "Link with the code"),
            LinkWithExisting => ("登録済みの認証器で確認して追加", "Add another, confirming with a linked one"),
            LinkWithExistingLead => (
                "登録済みの認証手段（カードの場合は暗証番号も入力）で本人確認すると、登録コードなしで別の認証手段を追加できます。確認に使うものを選び、追加するもののボタンを押してください。",
                "Confirm with a linked authenticator (for a card, enter its PIN too) to add another one without a code. Choose what to confirm with, then press the button of what to add.",
            ),
            Rename => ("名前を変更", "Rename"),
            Remove => ("削除", "Remove"),
            RemoveConfirmNote => (
                "削除すると、この認証器で開始した署名セッションも終了します。",
                "Removing it also ends signing sessions opened with it.",
            ),
            CreatedAt => ("登録", "Linked"),
            LastUsed => ("最終利用", "Last used"),
            NeverUsed => ("未使用", "never"),
            SyncedPasskey => ("同期パスキー", "synced passkey"),
            DefaultCredentialName => ("FIDO認証器", "FIDO authenticator"),
            CredentialNameInvalid => (
                "名前は1〜64文字で、制御文字を含めないでください。",
                "A name has 1 to 64 characters and no control characters.",
            ),
            CredentialNotFound => ("その認証器は見つかりません。", "That authenticator was not found."),
            SigningActive => ("認証済み", "Authenticated"),
            SigningExpiresAt => ("署名セッションの有効期限：", "Signing session valid until:"),
            SigningIdleAt => ("操作がない場合の終了時刻：", "Ends if idle at:"),
            SigningIdleNote => (
                "電子カルテから署名が行われるたびに、無操作時間の期限は延長されます。",
                "Each signature requested by the EMR extends the idle limit.",
            ),
            SigningEnd => ("署名セッションを終了", "End the signing session"),
            SigningNone => ("署名セッションはありません（未認証）。", "No signing session (not authenticated)."),
            FidoAuthenticator => ("FIDO認証器", "FIDO authenticator"),
            VerifyTitle => ("本人確認", "Confirm it is you"),
            VerifyLead => (
                "電子処方箋に署名するため、登録済みの方法で本人確認をしてください。",
                "To sign e-prescriptions, confirm that it is you with one of your linked methods.",
            ),
            VerifyNoneLinked => (
                "まだ認証手段が登録されていません。先に「認証手段の管理」で登録してください。",
                "No authenticator is linked yet. Link one first under “Manage authenticators”.",
            ),
            CardReminder => (
                "カードで確認するときは、先にカードをカードリーダーに置き、暗証番号を入力してから、カードのボタンを押してください。",
                "For a card: first put the card on the reader, enter its PIN, then press the card's button.",
            ),
            ManageTitle => ("認証手段の管理", "Manage authenticators"),
            ManageLink => (
                "認証手段の管理（登録・名前の変更・削除）",
                "Manage authenticators (link, rename, remove)",
            ),
            ManageLead => (
                "認証手段の登録・名前の変更・削除は、最初の設定のときや機器を替えたときだけ行います。毎日の本人確認は「本人確認」のページで行います。",
                "Linking, renaming and removing authenticators is only needed at set-up or when you change devices. The daily check is on the “Confirm it is you” page.",
            ),
            ManageNoneLead => (
                "まだ認証手段が登録されていないため、署名のための本人確認ができません。医療機関の管理者から受け取った登録コードを下に入力し、登録する認証手段（HPKIカード・FIDO認証器・マイナンバーカード）を選んでください。登録コードをお持ちでない場合は、医療機関の管理者に発行を依頼してください。",
                "No authenticator is linked yet, so you cannot confirm it is you for signing. Enter the registration code you received from your clinic's administrator below, then choose what to link (HPKI card, FIDO authenticator or My Number card). If you have no code, ask your clinic's administrator to issue one.",
            ),
            VerifyLink => ("本人確認のページへ", "Go to “Confirm it is you”"),
            LinkCodeTitle => ("登録コードで登録", "Link with a registration code"),
            LinkCodeLead => (
                "医療機関の管理者から受け取った登録コードを入力し、登録する認証手段のボタンを押してください。カードの場合は、先にカードをリーダーに置いて暗証番号も入力してください。",
                "Enter the registration code from your clinic's administrator, then press the button of what to link. For a card, first put it on the reader and enter its PIN as well.",
            ),
            LinkKindLabel => ("登録する認証手段：", "What to link:"),
            LinkExistingTitle => (
                "登録済みの認証手段で確認して追加",
                "Add another, confirming with a linked authenticator",
            ),
            ConfirmWithLabel => ("確認に使う登録済みの認証手段：", "Confirm with:"),
            ConfirmSwapCard => (
                "本人確認できました。2分以内に、追加するカードをカードリーダーに置き替え、そのカードの暗証番号を入力して「続ける」を押してください。",
                "Confirmed. Within 2 minutes, put the card to add on the reader instead, enter that card's PIN and press “Continue”.",
            ),
            ConfirmContinue => ("続ける", "Continue"),
            AgentOriginRefused => (
                "カードエージェントは起動していますが、このページ（{origin}）からの要求を許可していません。カードエージェントの起動オプションに「--allow-origin {origin}」を追加し（設定ファイルでは allow_origins）、エージェントを再起動してください。",
                "The card agent is running but does not accept requests from this page ({origin}). Add “--allow-origin {origin}” to the card agent's start command (allow_origins in its configuration file) and restart the agent.",
            ),
            LoginTriesLeft => (
                "あと{n}回続けて失敗すると、このログインIDは{minutes}分間ロックされます。",
                "After {n} more failed attempts this login ID is locked for {minutes} minutes.",
            ),
            LoginLockedUnlock => (
                "お急ぎの場合は、医療機関の管理者にロックの解除を依頼してください。",
                "If it is urgent, ask your clinic's administrator to unlock it.",
            ),
            BackToStart => ("最初のページへ戻る", "Back to the start page"),
            BackToLogin => ("ログインページへ", "Go to the sign-in page"),
            DeviceHelp => (
                "この端末の設定を確認してもらうため、医療機関の管理者に連絡してください。",
                "Contact your clinic's administrator to have this computer's set-up checked.",
            ),
            ReauthRequired => (
                "認証器の追加・名前の変更・削除には、直前に登録済みのカードまたはFIDO認証器での本人確認が必要です。「本人確認」のページで確認してから、もう一度操作してください。",
                "Adding, renaming or removing an authenticator needs a recent check with a linked card or FIDO authenticator. Confirm it is you on the “Confirm it is you” page, then try again.",
            ),
            PasswordChangeTitle => ("パスワードの変更", "Choose a new password"),
            PasswordChangeLead => (
                "管理者が設定した一時パスワードでログインしました。続けるには新しいパスワードを決めてください。",
                "You signed in with a temporary password set by an administrator. Choose a new password to continue.",
            ),
            PasswordChangeLeadVoluntary => (
                "現在のパスワードと、新しいパスワードを入力してください。変更すると、ほかのブラウザーでのログインは終了します。",
                "Enter your current password and a new one. Changing it signs you out in other browsers.",
            ),
            PasswordCurrent => ("現在のパスワード", "Current password"),
            PasswordCurrentWrong => ("現在のパスワードが正しくありません。", "The current password is not correct."),
            PasswordContext => (
                "このサービスや医療機関に関係する語（ninsho、clinic、処方箋など）を含むパスワードは使えません。",
                "The password must not contain words tied to this service or clinic (such as ninsho, clinic or 処方箋).",
            ),
            PasswordChangeLink => ("パスワードの変更", "Change password"),
            TemporaryPasswordExpired => (
                "一時パスワードの有効期限が切れています。管理者に新しい一時パスワードの発行を依頼してください。",
                "This temporary password has expired. Ask your administrator for a new one.",
            ),
            PasswordCurrentNote => ("新しいパスワードは一時パスワードと異なるものにしてください。", "The new password must differ from the temporary one."),
            PasswordNew => ("新しいパスワード", "New password"),
            PasswordConfirm => ("新しいパスワード（確認）", "New password (again)"),
            PasswordRule => (
                "8文字以上。よく使われるパスワードやログインID・氏名を含むものは使えません。推測されにくい長めのフレーズをおすすめします。",
                "At least 8 characters. Common passwords and ones containing your login ID or name are refused; a longer phrase that is hard to guess is best.",
            ),
            PasswordChangeSubmit => ("変更する", "Change password"),
            PasswordTooShortOrLong => ("パスワードは8〜256文字にしてください。", "The password must be 8–256 characters."),
            PasswordCommon => (
                "よく使われるパスワードの一覧に含まれているため使えません。",
                "That password is on the list of common passwords and cannot be used.",
            ),
            PasswordPersonal => (
                "ログインIDや氏名を含むパスワードは使えません。",
                "The password must not contain your login ID or name.",
            ),
            PasswordGuessable => (
                "推測されやすいパスワードです。関係のない単語を組み合わせた長めのフレーズにしてください。",
                "That password is too easy to guess. Use a longer phrase of unrelated words.",
            ),
            PasswordSameAsOld => ("新しいパスワードは現在のパスワードと異なるものにしてください。", "The new password must differ from the current one."),
            PasswordMismatch => ("確認用のパスワードが一致しません。", "The two new passwords do not match."),
            PasswordChangedMeanwhile => (
                "パスワードが管理者により変更されました。もう一度ログインしてください。",
                "Your password was changed by an administrator meanwhile. Please sign in again.",
            ),
            Working => ("認証器を操作してください…", "Use your authenticator…"),
            CardBadRequest => (
                "カードの種類または要求の形式が正しくありません。",
                "The card type or the request is malformed.",
            ),
            CardNoneLinked => (
                "この種類のカードはまだ登録されていません。先に登録コードなどでカードを登録してください。",
                "No card of this type is linked to your account yet. Link one first (for example with a registration code).",
            ),
            CardLinkNeedsCode => (
                "カードの登録には登録コード、または登録済みの認証器での確認が必要です。",
                "Linking a card needs a registration code or a confirmation with an authenticator you have already linked.",
            ),
            CardChallengeMissing => (
                "カードの確認要求が見つからないか、すでに使用されています。もう一度ボタンを押してください。",
                "The card request was not found or has already been used. Press the button again.",
            ),
            CardChallengeExpired => (
                "時間切れです（2分以内に完了してください）。もう一度ボタンを押してください。",
                "Timed out (finish within 2 minutes). Press the button again.",
            ),
            CardResponseInvalid => (
                "カードエージェントの応答が正しくありません（別の画面・別の接続先向けの応答の可能性があります）。もう一度お試しください。",
                "The card agent's answer is not valid (it may have been made for another page or gateway). Try again.",
            ),
            CardBadSignature => (
                "カードの署名を検証できませんでした。もう一度お試しください。",
                "The card's signature could not be verified. Try again.",
            ),
            CardWrongKind => (
                "選択した種類と異なるカードの応答です。選択したカードをカードリーダーに置いてください。",
                "The answer came from a different type of card than the one selected. Put the selected card on the reader.",
            ),
            CardExpired => (
                "カードの証明書の有効期限が切れています。カードの発行元で更新してください。",
                "The card's certificate has expired. Renew it with the card issuer.",
            ),
            CardNotYetValid => (
                "カードの証明書はまだ有効になっていません（有効期間の開始前です）。",
                "The card's certificate is not valid yet (its validity period has not started).",
            ),
            CardRevoked => (
                "カードの証明書は失効しています。このカードは使用できません。",
                "The card's certificate has been revoked. This card cannot be used.",
            ),
            CardRevocationUnavailable => (
                "証明書の失効情報を確認できないため、現在このカードでは認証できません。システム管理者に連絡してください。",
                "The certificate's revocation status cannot be checked right now, so this card cannot be used. Contact your administrator.",
            ),
            CardUntrusted => (
                "カードの証明書の発行元が信頼されていません（対応していないカード、または中間証明書の不足）。",
                "The card's certificate was not issued by a trusted authority (an unsupported card, or an intermediate certificate is missing).",
            ),
            CardNotDoctor => (
                "このHPKIカードの証明書には医師の資格（Medical Doctor）が記録されていません。",
                "This HPKI card's certificate does not carry the doctor role (Medical Doctor).",
            ),
            CardSigningCertificate => (
                "署名用の証明書が送られました。ログインにはカードの認証用（利用者証明用）の証明書が必要です。カードエージェントを更新するか、システム管理者に連絡してください。",
                "The card's signing certificate was sent. Login needs the card's authentication certificate. Update the card agent or contact your administrator.",
            ),
            CardPolicyNotAllowed => (
                "このカードの証明書の種類（証明書ポリシー）はログインに使用できません。対応しているカードか、システム管理者に確認してください。",
                "This kind of card certificate (its certificate policy) cannot be used for login. Check with your administrator which cards are supported.",
            ),
            CardUnusable => (
                "カードの証明書が認証に使用できない形式です。",
                "The card's certificate cannot be used for authentication.",
            ),
            CardNotLinked => (
                "このカードはあなたのアカウントに登録されていません。",
                "This card is not linked to your account.",
            ),
            CardOtherDoctor => (
                "このカードは別の医師のアカウントに登録されています。",
                "This card is linked to another doctor's account.",
            ),
            CardAlreadyLinked => (
                "このカードはすでに登録されています。",
                "This card is already linked.",
            ),
            CardLinkedToOther => (
                "このカードは別のアカウントに登録済みのため、登録できません（1枚のカードは1つのアカウントにのみ登録できます）。",
                "This card is already linked to another account and cannot be linked again (a card belongs to one account only).",
            ),
            CardNoRoleNeedsCode => (
                "医師の資格が記録されていないHPKIカードは、登録コードでのみ登録できます。",
                "An HPKI card without the doctor role can only be linked with a registration code.",
            ),
            CardPinLabel => (
                "カードの暗証番号（PIN）",
                "Card PIN",
            ),
            CardPinHint => (
                "暗証番号はこのパソコンのカードエージェントにだけ送られ、ゲートウェイには送信されません。",
                "The PIN goes only to the card agent on this computer, never to the gateway.",
            ),
            LinkCardHpki => (
                "登録コードでHPKIカードを登録",
                "Link an HPKI card with the code",
            ),
            LinkCardJpki => (
                "登録コードでマイナンバーカードを登録",
                "Link a My Number card with the code",
            ),
            LinkCardWithFido => (
                "FIDOで確認してカードを登録：",
                "Confirm with FIDO and link a card:",
            ),
            AgentNotRunning => (
                "カードエージェントに接続できません。このパソコンでカードエージェントが起動しているか確認してください。",
                "Cannot reach the card agent. Check that the card agent is running on this computer.",
            ),
            AgentNoReader => (
                "カードリーダーが見つかりません。カードリーダーを接続してください。",
                "No card reader found. Connect a card reader.",
            ),
            AgentNoCard => (
                "カードリーダーにカードがありません。カードを置いてください。",
                "There is no card on the reader. Put your card on the reader.",
            ),
            AgentWrongCard => (
                "選択した種類のカードではありません。正しいカードを置いてください。",
                "This is not a card of the selected type. Put the right card on the reader.",
            ),
            AgentPinFormat => (
                "暗証番号の形式が正しくありません（マイナンバーカードは数字4桁、HPKIカードは4〜16文字）。",
                "The PIN has the wrong format (My Number card: 4 digits; HPKI card: 4 to 16 characters).",
            ),
            AgentWrongPin => (
                "暗証番号が違います。",
                "The PIN is wrong.",
            ),
            AgentTriesLeft => (
                "残り回数：",
                "Tries left:",
            ),
            AgentPinLocked => (
                "暗証番号がロックされています。カードの発行元（マイナンバーカードは市区町村窓口）でロックを解除してください。",
                "The PIN is locked. Have it unlocked by the card issuer (for a My Number card, at your municipal office).",
            ),
            AgentCardRemoved => (
                "処理中にカードが取り外されました。カードを置いたまま、もう一度お試しください。",
                "The card was removed during the operation. Leave it on the reader and try again.",
            ),
            AgentCardError => (
                "カードの読み取りに失敗しました。カードを置き直して、もう一度お試しください。",
                "Reading the card failed. Put the card on the reader again and retry.",
            ),
            AgentOriginNotAllowed => (
                "カードエージェントがこのゲートウェイからの要求を許可していません。エージェントの設定（allow-origin）を確認してください。",
                "The card agent does not accept requests from this gateway. Check the agent's allow-origin setting.",
            ),
        };
        match lang {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn query_beats_cookie_beats_accept_language() {
        let mut h = HeaderMap::new();
        h.insert("accept-language", HeaderValue::from_static("en-US,en;q=0.9,ja;q=0.8"));
        assert_eq!(Lang::from_request(&h, None), Lang::En);
        h.insert("cookie", HeaderValue::from_static("a=b; lang=ja"));
        assert_eq!(Lang::from_request(&h, None), Lang::Ja);
        assert_eq!(Lang::from_request(&h, Some("lang=en")), Lang::En);
        assert_eq!(Lang::from_request(&HeaderMap::new(), None), Lang::Ja);
    }

    /// Issue 24: every notice names its own method (a card login never says FIDO), exists in both
    /// languages, and survives the trip through the address.
    #[test]
    fn every_notice_is_its_methods_in_both_languages() {
        for done in Done::ALL.into_iter().chain([Done::Password]) {
            assert_eq!(Done::parse(done.code()), Some(done));
            let (ja, en) = (done.text(Lang::Ja), done.text(Lang::En));
            assert!(!ja.is_empty() && !en.is_empty() && ja != en, "{done:?}");
            assert!(!ja.is_ascii() && en.is_ascii(), "{done:?}: ja is Japanese, en is English");
            assert!(done.location(Lang::En).starts_with(done.page()) && done.location(Lang::En).ends_with("&lang=en"));
            if let Done::Authenticated(m) | Done::Linked(m) | Done::Renamed(m) | Done::Removed(m) = done {
                let name = m.name();
                assert!(ja.contains(name.text(Lang::Ja)), "{done:?}: {ja}");
                assert!(en.contains(name.text(Lang::En)), "{done:?}: {en}");
                if m != Method::Fido {
                    assert!(!ja.contains("FIDO") && !en.contains("FIDO"), "{done:?} is a card's");
                }
            }
        }
        assert_eq!(Done::parse("authenticated"), None, "an unknown value shows no notice");
        // Set-up steps return to the management page, the daily ones to the identity check.
        assert_eq!(Done::Linked(Method::Jpki).page(), "/manage");
        assert_eq!(Done::Authenticated(Method::Jpki).page(), "/methods");
    }

    #[test]
    fn times_are_shown_in_jst() {
        assert_eq!(Lang::Ja.format_time(0), "1970-01-01 09:00（日本時間）");
        assert_eq!(Lang::En.format_time(0), "1970-01-01 09:00 JST");
    }
}
