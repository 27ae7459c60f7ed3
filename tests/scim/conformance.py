"""Runs the independent SCIM conformance tester, scim2-tester, against a running gateway.

Usage: conformance.py URL CERT KEY CA
  URL   the SCIM base, e.g. https://localhost:8443/scim/v2
  CERT, KEY  a provisioner's TLS client certificate and key (PEM)
  CA    the CA of the gateway's server certificate (PEM)

Prints one JSON object per check on standard output: title, status, reason, resource_type.
tests/integration/scim.rs runs it and asserts the results.

The tester fills the attributes the gateway's Schemas endpoint publishes with random values, each
on its own. A 医籍番号 belongs to a doctor and only to one (1-16 digits, unique in the clinic), a
rule between two attributes and a format that RFC 7643 schemas cannot express, so here the tester
makes staff: userKind "staff" and no medicalRegistrationNumber. Everything else (the clinic, from
the canonical values the gateway publishes, names, ids, passwords, booleans) is the tester's own
choice. Doctors, with their 医籍番号, are covered by tests/integration/scim.rs.
"""

import json
import ssl
import sys

import httpx2
import scim2_tester.checkers.patch_add as patch_add
import scim2_tester.checkers.patch_replace as patch_replace
import scim2_tester.filling as filling
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server

EXTENSION = "urn:ninsho:params:scim:schemas:extension:2.0:User"
_random_value = filling.generate_random_value


def domain_value(context, path, mutability=None, required=None):
    value = _random_value(context, path, mutability=mutability, required=required)
    name = str(path)
    if name.endswith("medicalRegistrationNumber"):
        return None
    if value is not None and name.endswith("userKind"):
        return "staff"
    return value


for module in (filling, patch_add, patch_replace):
    module.generate_random_value = domain_value


def main() -> None:
    url, cert, key, ca = sys.argv[1:5]
    tls = ssl.create_default_context(cafile=ca)
    tls.load_cert_chain(cert, key)
    with httpx2.Client(base_url=url, verify=tls, timeout=30) as http:
        client = SyncSCIMClient(http)
        for result in check_server(client):
            print(
                json.dumps(
                    {
                        "title": result.title,
                        "status": result.status.name,
                        "reason": result.reason,
                        "resource_type": result.resource_type,
                    },
                    ensure_ascii=False,
                )
            )


if __name__ == "__main__":
    main()
