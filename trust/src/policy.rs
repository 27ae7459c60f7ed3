//! End-entity certificate policies (RFC 5280 §4.2.1.4) allowed under an anchor.
//!
//! Real HPKI and JPKI certificates mark certificatePolicies critical and tell an authentication
//! certificate from a signing one by its policy OID (docs/cards.md). An anchor therefore carries an
//! allow-list of end-entity policies: exact OIDs or whole arcs (`1.2.392.100495.1.5.1.2.*`).

use std::fmt;
use std::str::FromStr;

/// What end-entity policies an anchor accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policies {
    /// Any certificate, with or without a certificatePolicies extension (TLS client anchors, or an
    /// explicit, audited operator choice for card anchors).
    Any,
    /// The end entity must assert at least one policy matching one of these.
    Allow(Vec<PolicyPattern>),
}

/// One allowed policy: an exact OID or an arc (every OID below it, not the arc itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPattern {
    oid: String,
    arc: bool,
}

/// A policy pattern that is not a dotted OID (optionally ending in `.*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a policy OID (digits and dots, optionally ending in .*)")]
pub struct BadPolicy(pub String);

impl FromStr for PolicyPattern {
    type Err = BadPolicy;
    fn from_str(s: &str) -> Result<PolicyPattern, BadPolicy> {
        let (oid, arc) = match s.strip_suffix(".*") {
            Some(prefix) => (prefix, true),
            None => (s, false),
        };
        let arcs: Vec<&str> = oid.split('.').collect();
        let well_formed = arcs.len() >= 2
            && arcs.iter().all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) && (a.len() == 1 || !a.starts_with('0')));
        if !well_formed {
            return Err(BadPolicy(s.to_owned()));
        }
        Ok(PolicyPattern { oid: oid.to_owned(), arc })
    }
}

impl fmt::Display for PolicyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.arc { write!(f, "{}.*", self.oid) } else { f.write_str(&self.oid) }
    }
}

impl PolicyPattern {
    /// Whether the dotted OID `oid` matches.
    pub fn matches(&self, oid: &str) -> bool {
        if self.arc {
            oid.strip_prefix(self.oid.as_str()).is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
        } else {
            oid == self.oid
        }
    }
}

impl Policies {
    /// Parses the stored or typed form: `any`, or OIDs/arcs separated by commas or whitespace.
    pub fn parse(s: &str) -> Result<Policies, BadPolicy> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("any") {
            return Ok(Policies::Any);
        }
        let patterns = s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<PolicyPattern>, _>>()?;
        if patterns.is_empty() {
            return Err(BadPolicy(s.to_owned()));
        }
        Ok(Policies::Allow(patterns))
    }

    /// Whether a certificate asserting `asserted` (dotted OIDs) is acceptable.
    pub fn allows(&self, asserted: &[String]) -> bool {
        match self {
            Policies::Any => true,
            Policies::Allow(patterns) => asserted.iter().any(|oid| patterns.iter().any(|p| p.matches(oid))),
        }
    }
}

impl fmt::Display for Policies {
    /// The form [`Policies::parse`] reads back: `any` or a comma-separated list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policies::Any => f.write_str("any"),
            Policies::Allow(patterns) => {
                let list: Vec<String> = patterns.iter().map(ToString::to_string).collect();
                f.write_str(&list.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arcs_match_below_the_arc_only() {
        let p: PolicyPattern = "1.2.392.100495.1.5.1.2.*".parse().unwrap();
        assert!(p.matches("1.2.392.100495.1.5.1.2.1"));
        assert!(p.matches("1.2.392.100495.1.5.1.2.0.1"));
        assert!(!p.matches("1.2.392.100495.1.5.1.2"));
        assert!(!p.matches("1.2.392.100495.1.5.1.20.1"));
        assert!(!p.matches("1.2.392.100495.1.5.1.1.0.1"));
        let exact: PolicyPattern = "1.2.392.200149.8.5.1.3.30".parse().unwrap();
        assert!(exact.matches("1.2.392.200149.8.5.1.3.30"));
        assert!(!exact.matches("1.2.392.200149.8.5.1.3.300"));
    }

    #[test]
    fn parse_and_display_round_trip() {
        for text in ["any", "1.2.3.*", "1.2.3.4,1.2.5.*"] {
            assert_eq!(Policies::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Policies::parse(" 1.2.3.4  1.2.5.* ").unwrap().to_string(), "1.2.3.4,1.2.5.*");
        for bad in ["", "1", "1..2", "1.2.x", "1.02.3", "1.2.*.3", "*"] {
            assert!(Policies::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn allow_lists_need_one_matching_policy() {
        let p = Policies::parse("1.2.3.*").unwrap();
        assert!(p.allows(&["9.9".into(), "1.2.3.4".into()]));
        assert!(!p.allows(&["1.2.4.1".into()]));
        assert!(!p.allows(&[]));
        assert!(Policies::Any.allows(&[]));
    }
}
