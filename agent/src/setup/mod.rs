//! The set-up and status pages on the agent's loopback port (docs/design.md §3.13): clinic staff
//! enter the clinic ID, the OQS folders and the clinic's client.p12 once; the agent checks each,
//! stores the key and the relay's configuration, and (re)starts the relay.
//!
//! Only this PC's browser can reach the pages (the listener is loopback), and only the pages
//! themselves can post the form: the Host header must name the listener (no DNS rebinding), a
//! POST's Origin must be the agent's own, and the form carries a per-process token. Nothing of
//! the form is logged; the password and the key never leave memory except as the stored key file.

mod check;
mod page;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Query, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

pub use check::{Field, Form, MAX_P12_BYTES, Problem, Target, write_private};
use page::Lang;

use crate::relay::run::RelayFile;
use crate::relay::supervisor::Supervisor;

/// Largest accepted form: the p12 and a few short fields.
const FORM_LIMIT: usize = MAX_P12_BYTES + 16 * 1024;

/// What the pages need.
pub struct SetupContext {
    /// Where the set-up stores its results, and which gateway it asks.
    pub target: Target,
    /// The running relay.
    pub supervisor: Arc<Supervisor>,
    /// The agent's version.
    pub version: &'static str,
    /// The self-update (its offer and the answer buttons on the status page), if it runs.
    pub updater: Option<Arc<crate::update::Updater>>,
}

#[derive(Clone)]
struct SetupState {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: SetupContext,
    /// The form's token, random per process.
    token: String,
    /// The agent's id if the set-up finds none stored.
    candidate_id: String,
    /// Accepted Host header values.
    hosts: Vec<String>,
    /// Accepted Origin header values of a POST.
    origins: Vec<String>,
    /// One set-up at a time.
    busy: Mutex<()>,
}

/// The pages' router, for a listener on `port`.
pub fn router(ctx: SetupContext, port: u16) -> Router {
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let state = SetupState {
        inner: Arc::new(Inner {
            ctx,
            token,
            candidate_id: uuid::Uuid::new_v4().to_string(),
            hosts: vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")],
            origins: vec![format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}")],
            busy: Mutex::new(()),
        }),
    };
    Router::new()
        .route("/", get(home))
        .route("/setup", get(setup_form).post(setup_submit))
        .route("/status", get(status))
        .route("/update", axum::routing::post(update_answer))
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(state)
}

/// The configuration file path the set-up writes and the agent reads at start.
pub fn relay_file_path(data_dir: &std::path::Path, explicit: Option<&PathBuf>) -> PathBuf {
    explicit.cloned().unwrap_or_else(|| data_dir.join("relay.toml"))
}

/// Host and Origin checks, and headers that keep the pages out of frames and caches.
async fn gate(State(state): State<SetupState>, request: Request, next: Next) -> Response {
    let inner = &state.inner;
    let host_ok = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).is_some_and(|h| inner.hosts.iter().any(|ok| ok == h));
    let lang = Lang::of_query(request.uri().query());
    if !host_ok {
        return page::refused(lang, StatusCode::MISDIRECTED_REQUEST).into_response();
    }
    if request.method() == Method::POST {
        let origin_ok = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).is_some_and(|o| inner.origins.iter().any(|ok| ok == o));
        if !origin_ok {
            tracing::warn!("set-up form posted from a foreign origin; refused");
            // Read (and drop) the bounded body first, so the client reads the refusal rather
            // than a connection reset in the middle of its upload.
            let _ = axum::body::to_bytes(request.into_body(), FORM_LIMIT).await;
            return page::refused(lang, StatusCode::FORBIDDEN).into_response();
        }
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[derive(serde::Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

fn lang_of(q: &LangQuery) -> Lang {
    Lang::parse(q.lang.as_deref())
}

async fn home(State(state): State<SetupState>, Query(q): Query<LangQuery>) -> Redirect {
    let configured = state.inner.ctx.target.relay_file.exists();
    let to = if configured { "/status" } else { "/setup" };
    Redirect::to(&format!("{to}{}", lang_of(&q).query()))
}

/// What the form shows before anything is entered: the current set-up, if any.
fn current(target: &Target) -> Form {
    match RelayFile::load(&target.relay_file) {
        Ok(file) => Form {
            clinic_id: file.clinic_id,
            req: file.req.display().to_string(),
            res: file.res.display().to_string(),
            ..Form::default()
        },
        Err(_) => Form::default(),
    }
}

async fn setup_form(State(state): State<SetupState>, Query(q): Query<LangQuery>) -> Response {
    let inner = &state.inner;
    page::setup(lang_of(&q), &inner.ctx, &inner.token, &current(&inner.ctx.target), &[]).into_response()
}

async fn setup_submit(State(state): State<SetupState>, multipart: Multipart) -> Response {
    let inner = &state.inner;
    let (form, lang, token) = match read_form(multipart).await {
        Ok(read) => read,
        Err(problem) => {
            return (StatusCode::BAD_REQUEST, page::setup(Lang::Ja, &inner.ctx, &inner.token, &Form::default(), &[problem])).into_response();
        }
    };
    if token.as_deref() != Some(inner.token.as_str()) {
        tracing::warn!("set-up form without this page's token; refused");
        return page::refused(lang, StatusCode::FORBIDDEN).into_response();
    }
    let _one = inner.busy.lock().await;
    match check::check_and_store(&form, &inner.ctx.target, &inner.candidate_id, inner.ctx.version).await {
        Ok(file) => {
            tracing::info!(clinic.id = %file.clinic_id, req = %file.req.display(), res = %file.res.display(), "set-up stored; the OQS relay restarts");
            inner.ctx.supervisor.start(file).await;
            page::done(lang, &inner.ctx).into_response()
        }
        Err(problems) => {
            let fields: Vec<&str> = problems.iter().map(|p| page::field_name(p.field)).collect();
            tracing::warn!(fields = ?fields, "set-up refused; nothing stored");
            (StatusCode::BAD_REQUEST, page::setup(lang, &inner.ctx, &inner.token, &form, &problems)).into_response()
        }
    }
}

/// Reads the multipart form; a malformed one is one problem.
async fn read_form(mut multipart: Multipart) -> Result<(Form, Lang, Option<String>), Problem> {
    let malformed = || Problem {
        field: Field::Certificate,
        ja: format!("フォームを読み取れません（証明書ファイルは {} KiB まで）。もう一度入力してください。", MAX_P12_BYTES / 1024),
        en: format!("The form cannot be read (the certificate file may be at most {} KiB). Enter it again.", MAX_P12_BYTES / 1024),
    };
    let mut form = Form::default();
    let (mut lang, mut token) = (Lang::Ja, None);
    while let Some(field) = multipart.next_field().await.map_err(|_| malformed())? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "p12" => form.p12 = field.bytes().await.map_err(|_| malformed())?.to_vec(),
            "password" => form.password = Zeroizing::new(field.text().await.map_err(|_| malformed())?),
            other => {
                let text = field.text().await.map_err(|_| malformed())?;
                if text.len() > 4096 {
                    return Err(malformed());
                }
                match other {
                    "clinic_id" => form.clinic_id = text,
                    "req" => form.req = text,
                    "res" => form.res = text,
                    "lang" => lang = Lang::parse(Some(&text)),
                    "token" => token = Some(text),
                    _ => {}
                }
            }
        }
    }
    Ok((form, lang, token))
}

async fn status(State(state): State<SetupState>, Query(q): Query<LangQuery>) -> Response {
    let ctx = &state.inner.ctx;
    let file = RelayFile::load(&ctx.target.relay_file).ok();
    page::status(lang_of(&q), ctx, &state.inner.token, file.as_ref()).into_response()
}

#[derive(serde::Deserialize)]
struct UpdateAnswer {
    #[serde(default)]
    token: String,
    #[serde(default)]
    answer: String,
    #[serde(default)]
    lang: Option<String>,
}

/// はい / いいえ on the update offer (docs/design.md §3.15): the same gate and token as the set-up.
async fn update_answer(State(state): State<SetupState>, form: Result<axum::Form<UpdateAnswer>, axum::extract::rejection::FormRejection>) -> Response {
    let inner = &state.inner;
    let Ok(axum::Form(form)) = form else {
        return page::refused(Lang::Ja, StatusCode::BAD_REQUEST).into_response();
    };
    let lang = Lang::parse(form.lang.as_deref());
    if form.token != inner.token {
        tracing::warn!("update answer without this page's token; refused");
        return page::refused(lang, StatusCode::FORBIDDEN).into_response();
    }
    let yes = match form.answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => return page::refused(lang, StatusCode::BAD_REQUEST).into_response(),
    };
    let taken = inner.ctx.updater.as_ref().is_some_and(|u| u.answer(yes));
    if !taken {
        tracing::info!("update answer with no offer shown; ignored");
    }
    Redirect::to(&format!("/status{}", lang.query())).into_response()
}
