"""Select the x509-limbo cases that apply to the gateway's client-certificate validation.

    python select_cases.py LIMBO_JSON --generated-at 2026-07-01T00:00:00Z --commit SHA > cases.json

LIMBO_JSON is the output of generate.py (x509-limbo's generator with client-authentication leaves).
Writes the selected cases as compact JSON to stdout and a per-group account of what was left out
(and why) to stderr. Needs `cryptography` and `asn1crypto` (both come with x509-limbo's own
dependencies).

A case is kept when its leaf may authenticate a TLS client (no extendedKeyUsage, or one with
clientAuth or anyExtendedKeyUsage) and its expected result does not hinge on something that cannot
arise for a client certificate. The groups left out, first match wins, are `EXCLUDED` below.
"""

import argparse
import json
import sys
from collections import defaultdict
from datetime import datetime

from asn1crypto import x509 as asn1_x509

CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
ANY_EKU = "2.5.29.37.0"

# (group, reason, predicate over a limbo test case). Order matters: a case is counted in the first
# group that matches.
EXCLUDED = [
    (
        "server-name",
        "the expected result is decided by matching the server name the client connected to "
        "(SAN/CN against the peer name); a client certificate is never matched against a host name",
        lambda tc: tc["id"].startswith(("webpki::san::", "webpki::cn::"))
        or tc["id"] == "rfc5280::ca-as-leaf-wrong-san",
    ),
    (
        "wildcard-server-name",
        "wildcard dNSName SANs against name constraints: the outcome rests on RFC 9525 wildcard "
        "semantics, which exist only for server identity",
        lambda tc: tc["id"]
        in (
            "cve::cve-2025-61727",
            "cve::cve-2025-61727-nc-permits-variant",
            "rfc5280::nc::nc-forbids-dnsname-wildcard-san",
            "webpki::nc::nc-permits-dns-san-pattern",
        ),
    ),
    (
        "server-eku",
        "the validator is asked for serverAuth; the gateway never validates a server certificate",
        lambda tc: SERVER_AUTH_NAME in (tc["extended_key_usage"] or []),
    ),
    (
        "cabf-server-eku",
        "limbo feature pedantic-webpki-eku: the CA/Browser Forum profile of TLS *server* "
        "certificates (EKU required on the leaf), not a rule for client certificates",
        lambda tc: "pedantic-webpki-eku" in (tc["features"] or []),
    ),
    (
        "caller-depth-limit",
        "limbo feature max-chain-depth: the expected result depends on a chain-depth limit the "
        "caller passes per case; the trust API has no such parameter (its limit is fixed)",
        lambda tc: "max-chain-depth" in (tc["features"] or []),
    ),
    (
        "leaf-not-for-clients",
        "the leaf's extendedKeyUsage allows neither clientAuth nor anyExtendedKeyUsage (real web "
        "server certificates in limbo's online cases); both our purposes refuse it before anything "
        "the case is about",
        lambda tc: not leaf_allows_client_auth(tc),
    ),
]

SERVER_AUTH_NAME = "serverAuth"


def pem_to_der(pem: str) -> bytes:
    import base64

    body = "".join(
        line.strip() for line in pem.strip().splitlines() if not line.startswith("-----")
    )
    return base64.b64decode(body)


def leaf_ekus(tc: dict) -> list[str] | None:
    """The leaf's EKU OIDs (dotted), None without the extension. Reads the raw DER with asn1crypto
    so that certificates with other malformed extensions still answer."""
    cert = asn1_x509.Certificate.load(pem_to_der(tc["peer_certificate"]))
    for ext in cert["tbs_certificate"]["extensions"]:
        if ext["extn_id"].dotted == "2.5.29.37":
            try:
                return [oid.dotted for oid in ext["extn_value"].parsed]
            except Exception:  # noqa: BLE001 -- an unreadable EKU restricts nothing we can see
                return []
    return None


def leaf_allows_client_auth(tc: dict) -> bool:
    ekus = leaf_ekus(tc)
    # An EKU that cannot be read (or is empty) is kept: rejecting it is the case's point.
    return ekus is None or not ekus or CLIENT_AUTH in ekus or ANY_EKU in ekus


def unix_seconds(iso: str) -> int:
    # The trust API takes whole seconds; a fractional validation time is floored.
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() // 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("limbo_json")
    parser.add_argument(
        "--generated-at",
        required=True,
        help="the generation time (ISO 8601), used for cases that validate 'now'",
    )
    parser.add_argument("--commit", required=True, help="the x509-limbo commit generated from")
    parser.add_argument("--stock", help="the same run with --stock, to mark which leaves changed")
    args = parser.parse_args()

    with open(args.limbo_json) as f:
        limbo = json.load(f)
    stock_leaf_ekus: dict[str, list[str] | None] = {}
    if args.stock:
        with open(args.stock) as f:
            stock_leaf_ekus = {tc["id"]: leaf_ekus(tc) for tc in json.load(f)["testcases"]}

    selected = []
    excluded: dict[str, list[str]] = defaultdict(list)
    reasons = {group: reason for group, reason, _ in EXCLUDED}
    for tc in limbo["testcases"]:
        group = next((g for g, _, pred in EXCLUDED if pred(tc)), None)
        if group is not None:
            excluded[group].append(tc["id"])
            continue
        time_iso = tc["validation_time"] or args.generated_at
        selected.append(
            {
                "id": tc["id"],
                "description": " ".join(tc["description"].split()),
                "features": tc["features"] or [],
                "limbo_kind": tc["validation_kind"],
                "client_leaf": bool(stock_leaf_ekus)
                and stock_leaf_ekus.get(tc["id"]) != leaf_ekus(tc),
                "expected": tc["expected_result"],
                "validation_time": time_iso,
                "validation_time_unix": unix_seconds(time_iso),
                "trusted": tc["trusted_certs"],
                "intermediates": tc["untrusted_intermediates"],
                "leaf": tc["peer_certificate"],
                "crls": tc["crls"] or [],
            }
        )

    out = {
        "source": "https://github.com/C2SP/x509-limbo",
        "commit": args.commit,
        "generated_at": args.generated_at,
        "total_generated": len(limbo["testcases"]),
        "excluded": {
            g: {"reason": reasons[g], "count": len(ids), "ids": ids} for g, ids in excluded.items()
        },
        "cases": selected,
    }
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")

    print(f"{len(limbo['testcases'])} generated, {len(selected)} selected", file=sys.stderr)
    for g, ids in excluded.items():
        print(f"  excluded {g}: {len(ids)} ({reasons[g]})", file=sys.stderr)


if __name__ == "__main__":
    main()
