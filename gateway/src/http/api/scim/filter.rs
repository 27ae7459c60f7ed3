//! SCIM filters (RFC 7644 §3.4.2.2), the subset the gateway supports: `attr eq value` for
//! `userName`, `externalId` and `active`, joined by `and`. Anything else is refused with
//! `invalidFilter`, and ServiceProviderConfig says `filter.supported` with this limit.
//!
//! Written by hand rather than with a crate: the grammar needed is three comparisons and `and`,
//! and a full SCIM filter parser would accept expressions (`or`, `not`, `co`, `sw`, value paths)
//! that the store cannot answer, which would then have to be refused after parsing anyway. The
//! tokenizer follows RFC 7643 §2.1 for strings (JSON string literals) and booleans.

/// One supported comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// `userName eq "…"` (compared folded, as at login: docs/security/login-ids.md).
    UserName(String),
    /// `externalId eq "…"` (compared exactly: it is the EMR's identifier).
    ExternalId(String),
    /// `active eq true|false`.
    Active(bool),
}

/// A parsed filter: every term must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The conjunction.
    pub terms: Vec<Term>,
}

/// Longest filter accepted (characters).
const MAX_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
}

/// Parses `input`, or says why it is not in the supported subset.
pub fn parse(input: &str) -> Result<Filter, String> {
    if input.chars().count() > MAX_LEN {
        return Err(format!("a filter is at most {MAX_LEN} characters"));
    }
    let tokens = tokenize(input)?;
    let mut terms = Vec::new();
    let mut rest = tokens.as_slice();
    loop {
        let [attr, op, value, tail @ ..] = rest else {
            return Err("expected `attribute eq value`".to_owned());
        };
        let Token::Word(attr) = attr else { return Err("expected an attribute name".to_owned()) };
        let Token::Word(op) = op else { return Err("expected an operator".to_owned()) };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(format!("operator {op} is not supported (only eq, joined by and)"));
        }
        terms.push(term(attr, value)?);
        match tail {
            [] => break,
            [Token::Word(and), more @ ..] if and.eq_ignore_ascii_case("and") => rest = more,
            _ => return Err("terms may only be joined by and".to_owned()),
        }
    }
    Ok(Filter { terms })
}

/// One comparison. Attribute names are case-insensitive (RFC 7643 §2.1) and may carry the core
/// schema's URN.
fn term(attr: &str, value: &Token) -> Result<Term, String> {
    const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:user:";
    let lower = attr.to_ascii_lowercase();
    let name = lower.strip_prefix(CORE).unwrap_or(&lower);
    match (name, value) {
        ("username", Token::Str(s)) => Ok(Term::UserName(s.clone())),
        ("externalid", Token::Str(s)) => Ok(Term::ExternalId(s.clone())),
        ("active", Token::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Term::Active(true)),
        ("active", Token::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Term::Active(false)),
        ("username" | "externalid", _) => Err(format!("{attr} is compared with a JSON string")),
        ("active", _) => Err("active is compared with true or false".to_owned()),
        _ => Err(format!("filtering on {attr} is not supported (userName, externalId, active)")),
    }
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c == ' ' {
            chars.next();
        } else if c == '"' {
            // A JSON string literal: let serde_json decode the escapes.
            let mut end = None;
            let mut escaped = false;
            chars.next();
            for (i, c) in chars.by_ref() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unterminated string")?;
            let s: String = serde_json::from_str(&input[start..=end]).map_err(|_| "invalid string literal".to_owned())?;
            tokens.push(Token::Str(s));
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == ':' || c == '.' || c == '-' {
            let mut word = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | ':' | '.' | '-') {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Word(word));
        } else {
            return Err(format!("unexpected {c:?} (grouping, value paths and not are not supported)"));
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn supported_filters_parse() {
        assert_eq!(parse(r#"userName eq "doc1""#).unwrap().terms, vec![Term::UserName("doc1".into())]);
        assert_eq!(
            parse(r#"externalId EQ "a \"b\"" and ACTIVE eq false"#).unwrap().terms,
            vec![Term::ExternalId("a \"b\"".into()), Term::Active(false)]
        );
        assert_eq!(
            parse(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x""#).unwrap().terms,
            vec![Term::UserName("x".into())]
        );
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "",
            "userName",
            r#"userName eq"#,
            r#"userName co "a""#,
            r#"userName eq "a" or active eq true"#,
            r#"not (userName eq "a")"#,
            r#"(userName eq "a")"#,
            r#"emails[type eq "work"]"#,
            r#"displayName eq "a""#,
            r#"active eq "true""#,
            r#"userName eq true"#,
            r#"userName eq "a"#,
            r#"userName eq "a" and"#,
            r#"userName eq "a" active eq true"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&format!(r#"userName eq "{}""#, "a".repeat(2000))).is_err());
    }
}
