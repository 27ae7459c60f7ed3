"""Runs the independent SCIM conformance tester, scim2-tester, against a running gateway.

Usage: conformance.py URL CERT KEY CA
  URL   the SCIM base, e.g. https://localhost:8443/scim/v2
  CERT, KEY  a provisioner's TLS client certificate and key (PEM)
  CA    the CA of the gateway's server certificate (PEM)

Prints one JSON object per check on standard output: title, status, reason, resource_type.
tests/integration/scim.rs runs it and asserts the results.

The tester fills every attribute the gateway's Schemas endpoint publishes with random values.
RFC 7643 has no way to publish a format, so for the two extension attributes whose values have
rules of this domain it is given valid ones: userKind "doctor" (so a 医籍番号 is required) and a
fresh 10-digit 医籍番号 each time. Everything else (the clinic, from the canonical values the
gateway publishes, names, ids, passwords, booleans) is the tester's own choice.
"""

import json
import random
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
    if value is not None and name.endswith("medicalRegistrationNumber"):
        return "".join(random.choice("0123456789") for _ in range(10))
    if value is not None and name.endswith("userKind"):
        return "doctor"
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
