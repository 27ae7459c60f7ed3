//! Path validation measured against C2SP/x509-limbo.
//!
//! Runs every case of `tests/limbo/cases.json` (x509-limbo's own generator with client-authentication
//! leaves, the cases that apply to client certificates; how they were chosen and regenerated is in
//! `tests/limbo/README.md` and `docs/x509-limbo.md`) through [`TrustStore::validate`] twice: with
//! [`Purpose::ClientTls`] (the TLS gate's rules) and with [`Purpose::CardAuth`] (card::verify's
//! rules). The case's trusted certificates are the anchors (revocation `Crl` with the case's CRLs when
//! it has any, otherwise `None`; policies `Any`), its intermediates the candidates, its time the
//! validation time.
//!
//! Every disagreement with x509-limbo's expected result must be listed in [`DELIBERATE`] with its
//! reason — the same list `docs/x509-limbo.md` shows. The test fails on a disagreement that is not
//! listed, on a listed case that agrees (the list and the doc would no longer be true), on a listed
//! id that is not in `cases.json`, and on a listed id that the doc does not mention.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use trust::{AnchorSpec, Policies, Purpose, Revocation, TrustStore};

/// Deliberate differences from x509-limbo's expected results: (case id, reason). Each holds for both
/// purposes: the test fails if a listed case agrees under either.
/// Keep in step with the table in docs/x509-limbo.md (the test checks every id appears there).
const DELIBERATE: &[(&str, &str)] = &[
    // Path building.
    ("cve::cve-2024-0567", TOO_MANY_INTERMEDIATES),
    ("rfc5280::nc::nc-forbids-alternate-chain-ica", ONE_PATH),
    ("rfc5280::nc::nc-forbids-same-chain-ica", ONE_PATH),
    // What an end entity may be.
    ("pathlen::validation-ignores-pathlen-in-leaf", CA_IS_NO_CLIENT),
    ("rfc5280::ca-as-leaf", CA_IS_NO_CLIENT),
    // Validity.
    ("rfc5280::validity::notafter-exact", NOT_AFTER_SECOND),
    ("rfc5280::validity::notafter-fractional", NOT_AFTER_SECOND),
    // Key sizes.
    ("webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf", RSA_ODD_SIZE),
    ("webpki::forbidden-rsa-not-divisible-by-8-in-root", RSA_ODD_SIZE),
    // CA certificate profile.
    ("crl::issuer-no-keyusage-extension", CA_NEEDS_KEY_USAGE),
    ("rfc5280::aki::cross-signed-root-missing-aki", ANCHOR_AS_CONFIGURED),
    ("webpki::aki::root-with-aki-missing-keyidentifier", ANCHOR_AS_CONFIGURED),
    ("rfc5280::pc::ica-noncritical-pc", NO_POLICY_PROCESSING),
    // Name constraints and names: enforced by OpenSSL, but the gateway never uses a client
    // certificate's DNS names, e-mail addresses or IP addresses.
    ("rfc5280::nc::permitted-dns-match-noncritical", NC_NONCRITICAL),
    ("rfc5280::nc::invalid-dnsname-leading-period", NAMES_UNUSED),
    ("rfc5280::nc::nc-permits-invalid-dns-san", NAMES_UNUSED),
    ("rfc5280::nc::nc-permits-invalid-email-san", NAMES_UNUSED),
    ("rfc5280::san::ip-in-dns", NAMES_UNUSED),
    ("rfc5280::san::underscore-dns", NAMES_UNUSED),
    ("webpki::nc::intermediate-permitted-excluded-subtrees-both-empty-sequences", NC_EMPTY),
    ("webpki::nc::intermediate-permitted-excluded-subtrees-both-null", NC_EMPTY),
    // Fields the gateway does not use.
    ("rfc5280::serial::too-long", SERIAL_GRACEFUL),
    ("rfc5280::serial::zero", SERIAL_GRACEFUL),
    ("webpki::malformed-aia", AIA_UNUSED),
];

const TOO_MANY_INTERMEDIATES: &str = "more than trust::MAX_INTERMEDIATES (4) candidate intermediates are refused before \
     path building; real clinic, HPKI and JPKI paths have at most one";
const ONE_PATH: &str = "OpenSSL builds one path and does not search the alternatives when a name constraint fails on it; \
     a client sending a conflicting extra certificate is refused (fail closed)";
const CA_IS_NO_CLIENT: &str = "a CA certificate (basicConstraints cA) is never a client or card certificate";
const NOT_AFTER_SECOND: &str = "OpenSSL counts the notAfter second itself as expired (RFC 5280 includes it): \
     refused one second early, fail closed";
const RSA_ODD_SIZE: &str = "an RSA modulus of 2052 bits is not weaker than 2048; the multiple-of-8 rule is CA/Browser Forum's";
const CA_NEEDS_KEY_USAGE: &str = "strict profile (X509_V_FLAG_X509_STRICT): a CA certificate without keyUsage is refused \
     (RFC 5280 4.2.1.3: CAs MUST include it); the case's subject (the CRL issuer check) is not reached";
const ANCHOR_AS_CONFIGURED: &str = "the anchor is the operator's registered certificate and ends the path; its own \
     authorityKeyIdentifier (used only to find its issuer) is not checked";
const NO_POLICY_PROCESSING: &str = "no RFC 5280 policy-tree processing: the anchor's end-entity allow-list decides; \
     the criticality of a policyConstraints extension changes nothing";
const NC_NONCRITICAL: &str = "a non-critical nameConstraints extension is still enforced (the Web PKI's reading, x509-limbo's \
     webpki::nc::permitted-dns-match-noncritical, which agrees)";
const NAMES_UNUSED: &str = "the gateway identifies a client by its certificate, never by a DNS name, e-mail address or \
     IP address in it; OpenSSL matches such names as given and their syntax decides nothing here";
const NC_EMPTY: &str = "nameConstraints with no subtrees constrain nothing; refusing them is a CA/Browser Forum rule";
const SERIAL_GRACEFUL: &str = "RFC 5280 4.1.2.2 asks relying parties to handle such serial numbers gracefully; a \
     CRL entry still matches it exactly";
const AIA_UNUSED: &str = "authorityInfoAccess is never read (nothing is fetched); a malformed non-critical one is ignored";

#[derive(Debug, Deserialize)]
struct Suite {
    commit: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    expected: Expected,
    validation_time_unix: i64,
    trusted: Vec<String>,
    intermediates: Vec<String>,
    leaf: String,
    crls: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum Expected {
    Success,
    Failure,
}

/// The DER inside one PEM block. Raw base64 on purpose: several cases carry certificates that
/// are malformed inside, which a parsing PEM reader would refuse before the validator sees them.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().map(str::trim).filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body.as_bytes()).unwrap_or_else(|e| panic!("PEM body is not base64: {e}\n{pem}"))
}

fn manifest_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn load_suite() -> Suite {
    let path = manifest_path("tests/limbo/cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the validator answered for one case: `Ok(())` or the refusal's code and message.
fn run_case(case: &Case, purpose: Purpose) -> Result<(), String> {
    let revocation = if case.crls.is_empty() {
        Revocation::None
    } else {
        Revocation::Crl(case.crls.iter().map(|p| pem_der(p)).collect())
    };
    let anchors = case
        .trusted
        .iter()
        .map(|pem| AnchorSpec { certificate: pem_der(pem), revocation: revocation.clone(), policies: Policies::Any })
        .collect();
    let store = TrustStore::new(anchors);
    let intermediates: Vec<Vec<u8>> = case.intermediates.iter().map(|p| pem_der(p)).collect();
    store
        .validate(&pem_der(&case.leaf), &intermediates, case.validation_time_unix, purpose)
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", e.code()))
}

#[derive(Default)]
struct Tally {
    agreed: usize,
    listed: usize,
    total: usize,
}

#[test]
fn limbo_cases_agree_or_are_listed() {
    let suite = load_suite();
    assert!(!suite.cases.is_empty(), "cases.json holds no case");
    let ids: BTreeSet<&str> = suite.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), suite.cases.len(), "duplicate case ids in cases.json");

    let doc_path = manifest_path("../docs/x509-limbo.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_else(|e| panic!("{}: {e}", doc_path.display()));

    let mut problems = String::new();
    let mut seen_listed: BTreeSet<&str> = BTreeSet::new();
    for (id, reason) in DELIBERATE {
        if !seen_listed.insert(id) {
            let _ = writeln!(problems, "{id}: listed twice in DELIBERATE");
        }
        if !ids.contains(id) {
            let _ = writeln!(problems, "{id}: listed in DELIBERATE but not in cases.json");
        }
        if !doc.contains(&format!("`{id}`")) {
            let _ = writeln!(problems, "{id}: listed in DELIBERATE but not in docs/x509-limbo.md");
        }
        if reason.trim().is_empty() {
            let _ = writeln!(problems, "{id}: listed without a reason");
        }
    }

    // LIMBO_SHOW=1 prints every case's answer (for reading, not for the verdict).
    let show = std::env::var_os("LIMBO_SHOW").is_some();
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for (purpose, name) in [(Purpose::ClientTls, "ClientTls"), (Purpose::CardAuth, "CardAuth")] {
        let tally = tallies.entry(name).or_default();
        for case in &suite.cases {
            tally.total += 1;
            let outcome = run_case(case, purpose);
            let got = if outcome.is_ok() { Expected::Success } else { Expected::Failure };
            let listed = DELIBERATE.iter().find(|(id, _)| *id == case.id);
            let answer = outcome.err().unwrap_or_else(|| "accepted".to_owned());
            if show {
                println!("{name}\t{}\t{:?}\t{answer}", case.id, case.expected);
            }
            match (got == case.expected, listed) {
                (true, None) => tally.agreed += 1,
                (false, Some(_)) => tally.listed += 1,
                (false, None) => {
                    let _ = writeln!(
                        problems,
                        "{name} {}: limbo expects {:?}, got {answer} (fix it or list it in DELIBERATE and the doc)",
                        case.id, case.expected
                    );
                }
                (true, Some((_, reason))) => {
                    let _ = writeln!(
                        problems,
                        "{name} {}: listed as deliberate ({reason}) but now agrees ({answer}); \
                         remove it from DELIBERATE and docs/x509-limbo.md",
                        case.id
                    );
                }
            }
        }
    }

    println!("x509-limbo {} — {} cases", suite.commit, suite.cases.len());
    for (name, t) in &tallies {
        println!(
            "{name}: {} agreed, {} listed as deliberate, {} total ({} unexplained)",
            t.agreed,
            t.listed,
            t.total,
            t.total - t.agreed - t.listed
        );
    }
    assert!(problems.is_empty(), "x509-limbo:\n{problems}");
}
