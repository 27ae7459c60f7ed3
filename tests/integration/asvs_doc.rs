//! Keeps docs/security/asvs-l3.md honest: every requirement has exactly one `Proof:` or
//! `Not applicable:` line, and every proof names an existing file holding that test function.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_owned()
}

fn document() -> String {
    std::fs::read_to_string(workspace_root().join("docs/security/asvs-l3.md")).expect("docs/security/asvs-l3.md")
}

/// (requirement heading, lines of its block) for every `### V…` heading.
fn requirements(doc: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    for line in doc.lines() {
        if let Some(id) = line.strip_prefix("### V") {
            blocks.push((id.to_owned(), Vec::new()));
        } else if line.starts_with("## ") {
            continue;
        } else if let Some((_, lines)) = blocks.last_mut() {
            lines.push(line.to_owned());
        }
    }
    blocks
}

/// Checks `path::…::name`: the file exists and declares `fn name` (`sqlite::`/`postgres::` and
/// `tests::` modules name the same function).
fn check_proof(target: &str) -> Result<(), String> {
    let (path, rest) = target.split_once("::").ok_or_else(|| format!("{target}: expected FILE::test_name"))?;
    let name = rest.rsplit("::").next().unwrap_or(rest);
    let file = workspace_root().join(path);
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{target}: cannot read {path}: {e}"))?;
    let declared = text.lines().any(|l| {
        let l = l.trim_start();
        ["fn ", "async fn ", "pub fn ", "pub async fn "].iter().any(|p| {
            l.strip_prefix(p).is_some_and(|r| r.strip_prefix(name).is_some_and(|after| after.starts_with('(')))
        })
    });
    if declared { Ok(()) } else { Err(format!("{target}: {path} has no fn {name}")) }
}

#[test]
fn every_requirement_has_one_proof_or_reason_and_every_proof_exists() {
    let doc = document();
    let blocks = requirements(&doc);
    assert!(blocks.len() >= 73, "V6, V7 and V9 of ASVS 5.0 have 73 requirements; found {}", blocks.len());
    let mut problems = Vec::new();
    for (id, lines) in &blocks {
        let verdicts: Vec<&String> =
            lines.iter().filter(|l| l.starts_with("Proof: ") || l.starts_with("Not applicable: ")).collect();
        if verdicts.len() != 1 {
            problems.push(format!("V{id}: {} Proof/Not applicable lines, expected exactly one", verdicts.len()));
            continue;
        }
        let verdict = verdicts[0];
        if let Some(reason) = verdict.strip_prefix("Not applicable: ") {
            if reason.trim().len() < 10 {
                problems.push(format!("V{id}: a Not applicable needs a reason"));
            }
        } else if let Some(proof) = verdict.strip_prefix("Proof: ")
            && let Err(e) = check_proof(proof.trim())
        {
            problems.push(format!("V{id}: {e}"));
        }
    }
    assert!(problems.is_empty(), "docs/security/asvs-l3.md:\n{}", problems.join("\n"));
}

#[test]
fn a_proof_naming_a_missing_test_is_caught() {
    assert!(check_proof("tests/integration/login.rs::wrong_password_and_unknown_login_get_the_same_answer").is_ok());
    assert!(check_proof("tests/integration/login.rs::sqlite::wrong_password_and_unknown_login_get_the_same_answer").is_ok());
    assert!(check_proof("tests/integration/login.rs::no_such_test").is_err());
    assert!(check_proof("tests/integration/nowhere.rs::anything").is_err());
    assert!(check_proof("tests/integration/login.rs::wrong_password").is_err(), "a prefix of a name is not the name");
}

#[test]
fn no_pending_proofs_are_left() {
    let pending: Vec<String> = requirements(&document())
        .into_iter()
        .filter(|(_, lines)| lines.iter().any(|l| l.starts_with("Proof: PENDING")))
        .map(|(id, _)| format!("V{id}"))
        .collect();
    assert!(pending.is_empty(), "requirements still PENDING: {}", pending.join(", "));
}
