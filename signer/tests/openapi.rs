//! `signer/openapi.json` describes the API as built: every route that `http::router()` declares
//! is in the document with its methods, the document names no route the router does not have, and
//! every `$ref` in it resolves.
//!
//! The route list is read from the source of `router()` itself (its `.route("PATH", METHOD(…)…)`
//! calls), so a route added there without a line in the document fails here.
#![allow(clippy::expect_used, reason = "test helpers: a document or source that does not parse is a failed test")]

use std::collections::BTreeSet;

use serde_json::Value;

/// The source the signer's API is built from.
const HTTP_RS: &str = include_str!("../src/http.rs");

/// HTTP methods as axum's routing functions name them.
const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

/// (path, method) for every `.route(…)` call in the body of `pub fn router(`.
fn routes_in_code() -> BTreeSet<(String, String)> {
    let start = HTTP_RS.find("pub fn router(").expect("http.rs has `pub fn router(`");
    let body = &HTTP_RS[start..];
    // The function ends at the first line that closes it at column 0.
    let body = &body[..body.find("\n}\n").expect("router() ends")];
    let mut routes = BTreeSet::new();
    let mut rest = body;
    while let Some(at) = rest.find(".route(") {
        let call = &rest[at + ".route(".len()..];
        let (path, methods, len) = parse_route_call(call);
        for m in methods {
            routes.insert((path.clone(), m));
        }
        rest = &call[len..];
    }
    assert!(!routes.is_empty(), "no .route( calls found in router()");
    routes
}

/// Reads `"PATH", METHOD(…).METHOD(…))` up to the `)` that closes `.route(`: the path, the
/// methods named at the call's own nesting level (not inside a handler's closure), and the
/// length read.
fn parse_route_call(call: &str) -> (String, Vec<String>, usize) {
    let open = call.find('"').expect("a route path literal");
    let close = open + 1 + call[open + 1..].find('"').expect("the path literal ends");
    let path = call[open + 1..close].to_owned();
    let bytes = call.as_bytes();
    let (mut depth, mut i, mut in_string) = (1usize, close + 1, false);
    let mut methods = Vec::new();
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_string = false;
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return (path, methods, i + 1);
                    }
                }
                b'a'..=b'z' if depth == 1 && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) => {
                    let word: String = call[i..].chars().take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_').collect();
                    if METHODS.contains(&word.as_str()) && call[i + word.len()..].starts_with('(') {
                        methods.push(word.clone());
                    }
                    i += word.len();
                    continue;
                }
                _ => {}
            }
        }
        i += 1;
    }
    panic!("unterminated .route( call for {path}");
}

fn document() -> Value {
    serde_json::from_str(signer::http::OPENAPI).expect("signer/openapi.json is JSON")
}

fn routes_in_document(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        for (key, _) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&key.as_str()) {
                routes.insert((path.clone(), key.clone()));
            }
        }
    }
    routes
}

#[test]
fn the_parser_reads_the_known_routes() {
    // The parser itself, on the routes this test was written against.
    let routes = routes_in_code();
    for expected in [("/csc/v2/info", "post"), ("/csc/v2/info", "get"), ("/csc/v2/signatures/signHash", "post"), ("/openapi.json", "get")] {
        assert!(routes.contains(&(expected.0.to_owned(), expected.1.to_owned())), "{expected:?} not read from router(): {routes:?}");
    }
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = document();
    assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.1.")), Some(true), "an OpenAPI 3.1 document");
    let code = routes_in_code();
    let documented = routes_in_document(&doc);
    let missing: Vec<_> = code.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&code).collect();
    assert!(missing.is_empty(), "routes of router() missing from signer/openapi.json: {missing:?}");
    assert!(extra.is_empty(), "signer/openapi.json documents routes router() does not have: {extra:?}");
}

#[test]
fn every_operation_answers_json_errors_and_requires_the_client_certificate() {
    let doc = document();
    assert_eq!(doc["components"]["securitySchemes"]["clientCertificate"]["type"], "mutualTLS");
    assert!(doc["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("clientCertificate").is_some())));
    let error = &doc["components"]["schemas"]["Error"];
    let required: BTreeSet<&str> = error["required"].as_array().expect("Error.required").iter().filter_map(Value::as_str).collect();
    assert_eq!(required, BTreeSet::from(["error", "error_description"]));
    for (path, method) in routes_in_document(&doc) {
        if !path.starts_with("/csc/v2/") {
            continue;
        }
        let responses = doc["paths"][&path][&method]["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: responses"));
        // Every CSC method identifies the caller first.
        for status in ["200", "403", "503"] {
            assert!(responses.contains_key(status), "{method} {path} does not document {status}");
        }
    }
}

#[test]
fn every_reference_resolves() {
    let doc = document();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("only local references: {r}"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(s)) => out.push(s.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The request members the handlers read are the document's, spelled the same: the CSC names
/// that `csc_shape_error` reports and the structs' renames.
#[test]
fn sign_hash_request_fields_match_the_code() {
    let doc = document();
    let props = doc["components"]["schemas"]["SignHashRequest"]["properties"].as_object().expect("SignHashRequest.properties");
    let start = HTTP_RS.find("struct SignHashRequest").expect("SignHashRequest in http.rs");
    let body = &HTTP_RS[start..start + HTTP_RS[start..].find("\n}\n").expect("its end")];
    for line in body.lines().map(str::trim) {
        let Some(field) = line.strip_suffix(',').and_then(|l| l.split(':').next()).filter(|f| !f.starts_with('#') && !f.contains(' ')) else {
            continue;
        };
        // `#[serde(rename = "…")]` names win; otherwise camelCase of the Rust name.
        let renamed = body
            .lines()
            .map(str::trim)
            .zip(body.lines().map(str::trim).skip(1))
            .find(|(_, next)| next.split(':').next() == Some(field))
            .and_then(|(attr, _)| attr.split("rename = \"").nth(1).and_then(|r| r.split('"').next()).map(str::to_owned));
        let name = renamed.unwrap_or_else(|| camel(field));
        assert!(props.contains_key(&name), "SignHashRequest.{name} (field {field}) is not in the document");
    }
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
