"""Generate x509-limbo's test suite with client-authentication leaves.

Run with x509-limbo's own Python package installed (its `limbo` CLI and dependencies), from any
directory:

    python generate.py --output limbo.json

This drives x509-limbo's own generator (`limbo compile`) with two changes, both recorded in the
README beside this file:

* Every end-entity certificate that x509-limbo would give the single EKU `serverAuth` (its default
  leaf) gets `clientAuth` instead, same criticality, everything else untouched. The gateway only
  ever validates client certificates, and both of its policies refuse a serverAuth-only leaf before
  any other check, so a stock leaf would hide the check the case is about. Cases that are *about*
  the EKU (`rfc5280::eku::*`, `webpki::eku::*`) keep their leaves as x509-limbo makes them.
* The BetterTLS import is not registered: its input (a large asset file) is not in the snapshot we
  build from, and every one of its cases is a server validation with a host name to match.

`--stock` turns the first change off (x509-limbo's own output, less BetterTLS), for comparison.
"""

import argparse
import functools
import sys

from cryptography import x509

import limbo.testcases.bettertls as bettertls
from limbo import _cli, testcases
from limbo.assets import _Extension, ext
from limbo.testcases._core import Builder

# Cases whose subject is the leaf's EKU itself: their leaves stay as generated.
EKU_CASES = ("rfc5280::eku::", "webpki::eku::")

_stock_leaf_cert = Builder.leaf_cert
_SENTINEL = object()


def _is_server_auth_only(eku: object) -> bool:
    return (
        isinstance(eku, _Extension)
        and isinstance(eku.ext, x509.ExtendedKeyUsage)
        and list(eku.ext) == [x509.OID_SERVER_AUTH]
    )


def _client_leaf_cert(self, parent, **kwargs):  # type: ignore[no-untyped-def]
    eku = kwargs.get("eku", _SENTINEL)
    if eku is _SENTINEL:
        eku = (_stock_leaf_cert.__kwdefaults__ or {})["eku"]
    if _is_server_auth_only(eku):
        kwargs["eku"] = ext(x509.ExtendedKeyUsage([x509.OID_CLIENT_AUTH]), critical=eku.critical)
    return _stock_leaf_cert(self, parent, **kwargs)


def _generate(case_id: str, make, client_leaves: bool):  # type: ignore[no-untyped-def]
    if client_leaves and not case_id.startswith(EKU_CASES):
        Builder.leaf_cert = _client_leaf_cert  # type: ignore[method-assign]
    try:
        return make()
    finally:
        Builder.leaf_cert = _stock_leaf_cert  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--stock", action="store_true", help="keep x509-limbo's serverAuth leaves")
    args = parser.parse_args()

    # The BetterTLS asset is absent; everything it registers is server-only (see above).
    bettertls.register_testcases = lambda: None
    for case_id, make in list(testcases.registry.items()):
        testcases.registry[case_id] = functools.partial(
            _generate, case_id, make, not args.stock
        )

    sys.argv = ["limbo", "compile", "--output", args.output]
    _cli.main()


if __name__ == "__main__":
    main()
