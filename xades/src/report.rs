//! The verification report: JSON for `POST /api/v1/verify`, text for `ninsho-signer verify`, in
//! the spirit of the verifiers pharmacies use — one verdict (Japanese and English) and every check.

use std::fmt;

use serde_json::json;

use crate::{Report, Verdict};

/// Unix seconds as RFC 3339 UTC.
pub(crate) fn utc(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

impl Verdict {
    /// `valid` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
        }
    }

    /// 有効 / 無効 with the English word.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Valid => "有効 / Valid",
            Verdict::Invalid => "無効 / Invalid",
        }
    }
}

impl Report {
    /// The report as JSON: `verdict`, `checks` (`name`, `ok`, `code`, `detail`), `signer_subject`,
    /// `hc_roles`, `signing_time` and `timestamp_time` (RFC 3339, or null).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "verdict": self.verdict.as_str(),
            "checks": self.checks.iter().map(|c| json!({ "name": c.name, "ok": c.ok, "code": c.code, "detail": c.detail })).collect::<Vec<_>>(),
            "signer_subject": self.signer_subject,
            "hc_roles": self.hc_roles,
            "signing_time": self.signing_time.map(utc),
            "timestamp_time": self.timestamp_time.map(utc),
        })
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &crate::Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "電子処方箋の署名 / e-prescription signature: {}", self.verdict.label())?;
        if let Some(s) = &self.signer_subject {
            writeln!(f, "署名者 / signer: {s}{}", if self.hc_roles.is_empty() { String::new() } else { format!(" ({})", self.hc_roles.join(", ")) })?;
        }
        if let Some(t) = self.signing_time {
            writeln!(f, "署名時刻 / signing time: {}", utc(t))?;
        }
        if let Some(t) = self.timestamp_time {
            writeln!(f, "タイムスタンプ / time-stamp: {}", utc(t))?;
        }
        for c in &self.checks {
            if c.ok {
                writeln!(f, "OK  {}: {}", c.name, c.detail)?;
            } else {
                writeln!(f, "NG  {} [{}]: {}", c.name, c.code, c.detail)?;
            }
        }
        Ok(())
    }
}
