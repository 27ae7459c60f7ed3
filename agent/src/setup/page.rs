//! The pages' HTML: Japanese first, English with `?lang=en`. No script; the form posts itself.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::SetupContext;
use super::check::{Field, Form, Problem};
use crate::relay::run::RelayFile;
use crate::relay::status::Connection;
use crate::update::Shown;

/// The page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 日本語 (the default).
    Ja,
    /// English.
    En,
}

impl Lang {
    /// `en` is English; anything else Japanese.
    pub fn parse(value: Option<&str>) -> Self {
        if value == Some("en") { Lang::En } else { Lang::Ja }
    }

    /// From a raw query string.
    pub fn of_query(query: Option<&str>) -> Self {
        let en = query.is_some_and(|q| q.split('&').any(|kv| kv == "lang=en"));
        if en { Lang::En } else { Lang::Ja }
    }

    /// The query suffix keeping the language on links.
    pub fn query(self) -> &'static str {
        match self {
            Lang::Ja => "",
            Lang::En => "?lang=en",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    fn t(self, ja: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }
}

/// The form field's name (also used in the log, which never carries the values).
pub fn field_name(field: Field) -> &'static str {
    match field {
        Field::ClinicId => "clinic_id",
        Field::Req => "req",
        Field::Res => "res",
        Field::Certificate => "p12",
        Field::Gateway => "gateway",
    }
}

const STYLE: &str = "body{font-family:system-ui,'Hiragino Sans','Yu Gothic UI',Meiryo,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;line-height:1.6;color:#1b1b1b}\
h1{font-size:1.4rem}label{display:block;font-weight:600;margin-top:1rem}input[type=text],input[type=password]{width:100%;padding:.4rem;font-size:1rem;box-sizing:border-box}\
.err{color:#a40000;margin:.2rem 0}.box{border:1px solid #a40000;background:#fff4f4;padding:.5rem 1rem}.ok{border:1px solid #2e7d32;background:#f1f8f1;padding:.5rem 1rem}\
button{margin-top:1.5rem;padding:.5rem 2rem;font-size:1rem}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;white-space:nowrap}\
nav{float:right}small{color:#555}";

fn layout(lang: Lang, title: &str, body: Markup) -> Markup {
    let other = match lang {
        Lang::Ja => html! { a href="?lang=en" lang="en" { "English" } },
        Lang::En => html! { a href="?" lang="ja" { "日本語" } },
    };
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (STYLE) }
            }
            body {
                nav { (other) }
                (body)
            }
        }
    }
}

fn problems_for(problems: &[Problem], field: Field) -> impl Iterator<Item = &Problem> {
    problems.iter().filter(move |p| p.field == field)
}

fn say(lang: Lang, p: &Problem) -> &str {
    match lang {
        Lang::Ja => &p.ja,
        Lang::En => &p.en,
    }
}

/// The set-up form, with the problems of the last try beside their fields.
pub fn setup(lang: Lang, ctx: &SetupContext, token: &str, form: &Form, problems: &[Problem]) -> Markup {
    let field_errors = |field: Field| {
        html! { @for p in problems_for(problems, field) { p.err role="alert" { (say(lang, p)) } } }
    };
    let title = lang.t("電子処方箋連携ツール 初期設定", "E-prescription relay: set-up");
    let gateway = ctx.target.gateway.as_deref().unwrap_or("—");
    layout(
        lang,
        title,
        html! {
            h1 { (title) }
            p { small { (lang.t("接続先ゲートウェイ: ", "Gateway: ")) (gateway) " · Version v" (ctx.version) } }
            @if !problems.is_empty() {
                div.box role="alert" {
                    p { strong { (lang.t("初期化できませんでした。次の点を確認してください。何も保存していません。", "The set-up was not completed. Check the following; nothing was stored.")) } }
                    ul { @for p in problems { li { (say(lang, p)) } } }
                }
            }
            form method="post" action={ "/setup" (lang.query()) } enctype="multipart/form-data" {
                input type="hidden" name="token" value=(token);
                input type="hidden" name="lang" value=(lang.code());
                label for="clinic_id" { (lang.t("クリニックID", "Clinic ID")) }
                input type="text" id="clinic_id" name="clinic_id" value=(form.clinic_id) autocomplete="off" required;
                (field_errors(Field::ClinicId))
                label for="req" { (lang.t("OQS ネットワークフォルダ(req)", "OQS network folder (req)")) }
                input type="text" id="req" name="req" value=(form.req) placeholder="\\\\OQS-PC\\share\\req" required;
                (field_errors(Field::Req))
                label for="res" { (lang.t("OQS ネットワークフォルダ(res)", "OQS network folder (res)")) }
                input type="text" id="res" name="res" value=(form.res) placeholder="\\\\OQS-PC\\share\\res" required;
                (field_errors(Field::Res))
                label for="p12" { (lang.t("証明書 (client.p12)", "Certificate (client.p12)")) }
                input type="file" id="p12" name="p12" accept=".p12,.pfx,application/x-pkcs12" required;
                label for="password" { (lang.t("証明書のパスワード", "Certificate password")) }
                input type="password" id="password" name="password" autocomplete="off";
                (field_errors(Field::Certificate))
                (field_errors(Field::Gateway))
                button type="submit" { (lang.t("初期化", "Set up")) }
            }
            p { a href={ "/status" (lang.query()) } { (lang.t("状態を見る", "View status")) } }
        },
    )
}

/// The set-up is stored.
pub fn done(lang: Lang, ctx: &SetupContext) -> Markup {
    let title = lang.t("初期化を完了しました。ブラウザを閉じてください。", "The set-up is complete. You can close the browser.");
    layout(
        lang,
        title,
        html! {
            div.ok role="status" {
                h1 { (title) }
                p { (lang.t(
                    "証明書と鍵はこのパソコンのツール用フォルダに安全に保存しました。取り込んだ元の client.p12 ファイルは削除してかまいません。",
                    "The certificate and its key are stored in the tool's own folder on this PC. You may delete the original client.p12 file."
                )) }
                p { small { (ctx.target.data_dir.display()) } }
            }
            p { a href={ "/status" (lang.query()) } { (lang.t("状態を見る", "View status")) } }
        },
    )
}

fn connection_text(lang: Lang, c: &Connection, running: bool) -> String {
    if !running {
        return lang.t("停止中（初期化が必要です）", "Not running (set-up needed)").to_owned();
    }
    match (c, lang) {
        (Connection::Starting, _) => lang.t("接続中…", "Connecting…").to_owned(),
        (Connection::Connected { clinic_name }, Lang::Ja) => format!("接続しています（{clinic_name}）"),
        (Connection::Connected { clinic_name }, Lang::En) => format!("Connected ({clinic_name})"),
        (Connection::Failing { error }, Lang::Ja) => format!("接続できません。再試行しています: {error}"),
        (Connection::Failing { error }, Lang::En) => format!("Cannot connect; retrying: {error}"),
        (Connection::WrongClinic { named }, Lang::Ja) => format!("この証明書は別のクリニック（{named}）のものです。初期化をやり直してください。"),
        (Connection::WrongClinic { named }, Lang::En) => format!("The certificate belongs to another clinic ({named}). Set up again."),
    }
}

fn folder_state(lang: Lang, path: &std::path::Path) -> &'static str {
    if path.is_dir() { lang.t("利用可能", "available") } else { lang.t("見つかりません", "not found") }
}

/// The self-update's part of the status page: the offer with はい / いいえ, progress, refusals.
fn update_section(lang: Lang, shown: &Shown, token: &str) -> Markup {
    let say = |ja: &str, en: &str| match lang {
        Lang::Ja => ja.to_owned(),
        Lang::En => en.to_owned(),
    };
    html! {
        h2 { (lang.t("更新", "Updates")) }
        div #update {
            @match shown {
                Shown::Off { why } => p.box {
                    (lang.t("このツールは自動更新が無効です（リリース鍵が組み込まれていません）。", "Updates are off for this tool (no release keys are built in)."))
                    br; small { (why) }
                },
                Shown::Unknown => p { (lang.t("まだ更新を確認していません。", "Not checked for updates yet.")) },
                Shown::UpToDate => p { (lang.t("最新のバージョンです。", "This is the newest version.")) },
                Shown::Offered { version, notes_ja, notes_en, auto_hour } => div.ok role="alert" {
                    p { strong { (lang.t("新しいツールがリリースされています。更新しますか?", "A new version of the tool has been released. Update now?")) } }
                    p { "Version v" (version) }
                    p style="white-space:pre-wrap" { (match lang { Lang::Ja => notes_ja, Lang::En => notes_en }) }
                    @if let Some(h) = auto_hour {
                        p { small { (match lang {
                            Lang::Ja => format!("「いいえ」の場合も、{h} 時に自動で更新します。"),
                            Lang::En => format!("If not answered, it is installed automatically at {h}:00."),
                        }) } }
                    }
                    form method="post" action="/update" style="display:inline" {
                        input type="hidden" name="token" value=(token);
                        input type="hidden" name="lang" value=(lang.code());
                        input type="hidden" name="answer" value="yes";
                        button #update-yes type="submit" { (lang.t("はい", "Yes")) }
                    }
                    " "
                    form method="post" action="/update" style="display:inline" {
                        input type="hidden" name="token" value=(token);
                        input type="hidden" name="lang" value=(lang.code());
                        input type="hidden" name="answer" value="no";
                        button #update-no type="submit" { (lang.t("いいえ", "No")) }
                    }
                },
                Shown::Declined { version } => p { (say(&format!("v{version} への更新を見送りました。次の確認時にもう一度お知らせします。"), &format!("The update to v{version} was declined; it will be offered again at the next check."))) },
                Shown::Working { version } => p role="status" { (say(&format!("v{version} に更新しています（ダウンロード・確認・自己診断）…"), &format!("Updating to v{version} (download, checks, self-test)…"))) },
                Shown::Refused { version, ja, en } => div.box role="alert" {
                    p { strong { (say(&format!("v{version} には更新しませんでした。何も変更していません。"), &format!("Not updated to v{version}; nothing was changed."))) } }
                    p { (match lang { Lang::Ja => ja, Lang::En => en }) }
                },
                Shown::Ready { version } => div.ok role="status" {
                    p { strong { (lang.t("新しいツールに更新する準備が完了しました。ツールを終了します。", "The new version of the tool is ready. The tool now exits and restarts.")) } }
                    p { "Version v" (version) }
                },
                Shown::Probation { version } => p role="status" { (say(&format!("v{version} に更新しました。動作を確認しています…"), &format!("Updated to v{version}; checking that it works…"))) },
            }
        }
    }
}

/// The status page: version, gateway connection, folders, the last relayed requests, updates.
pub fn status(lang: Lang, ctx: &SetupContext, token: &str, file: Option<&RelayFile>) -> Markup {
    let title = lang.t("電子処方箋連携ツール 状態", "E-prescription relay: status");
    let relay = ctx.supervisor.status();
    let recent = relay.recent();
    layout(
        lang,
        title,
        html! {
            h1 { (title) }
            table {
                tr { th { (lang.t("バージョン", "Version")) } td { "Version v" (ctx.version) } }
                tr { th { (lang.t("ゲートウェイ", "Gateway")) } td { (ctx.target.gateway.as_deref().unwrap_or("—")) } }
                tr { th { (lang.t("接続", "Connection")) } td #connection { (connection_text(lang, &relay.connection(), relay.running())) } }
                @if let Some(file) = file {
                    tr { th { (lang.t("クリニックID", "Clinic ID")) } td { (file.clinic_id) } }
                    tr { th { "req" } td { (file.req.display()) " — " (folder_state(lang, &file.req)) } }
                    tr { th { "res" } td { (file.res.display()) " — " (folder_state(lang, &file.res)) } }
                }
            }
            h2 { (lang.t("最近の中継", "Recently relayed")) }
            @if recent.is_empty() {
                p { (lang.t("まだありません。", "None yet.")) }
            } @else {
                table #recent {
                    tr { th { (lang.t("日時 (UTC)", "Time (UTC)")) } th { (lang.t("ファイル", "File")) } th { (lang.t("結果", "Outcome")) } }
                    @for r in &recent {
                        tr { td { (r.at) } td { (r.file_name) } td { (r.outcome) } }
                    }
                }
            }
            @if let Some(updater) = &ctx.updater {
                (update_section(lang, &updater.shown(), token))
            }
            p { a href={ "/setup" (lang.query()) } { (lang.t("初期設定をやり直す", "Set up again")) } }
        },
    )
}

/// A request the gate refused: a foreign Host, a foreign Origin, or a missing form token.
pub fn refused(lang: Lang, status: StatusCode) -> Response {
    let title = lang.t("このページは、このパソコンのブラウザから直接開いてください。", "Open this page directly in this PC's browser.");
    let body = layout(
        lang,
        title,
        html! {
            h1 { (title) }
            p { (lang.t("http://127.0.0.1 のアドレスで開いたページからのみ初期化できます。", "The set-up can only be sent from the page opened at its http://127.0.0.1 address.")) }
            p { a href="/setup" { (lang.t("初期設定へ", "To the set-up")) } }
        },
    );
    (status, body).into_response()
}
