#!/usr/bin/env bash
# Offline checks of deploy/ (compose.yaml, compose/haproxy.cfg, k8s/gateway.yaml, Dockerfile):
# these machines have no container engine and no cluster. A step of tests/run.sh; see
# deploy/check.py for what is checked. Needs python3 with venv, haproxy and cargo (tests/run.sh
# installs them); the Python packages go into a virtualenv under target/ (or $DEPLOY_CHECK_DIR).
# With NINSHO_GATEWAY_BIN and TEST_DATABASE_URL set (tests/run.sh sets both) it also rehearses the
# compose setup with real gateways and haproxy on loopback (deploy/rehearse_compose.py; psql, curl).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DEPLOY_CHECK_DIR:-$PWD/target/deploy-check}
VENV=$DIR/venv
REQ=deploy/check-requirements.txt
for tool in python3 haproxy cargo; do
  command -v "$tool" >/dev/null || { echo "deploy/check.sh: $tool is missing (tests/run.sh installs it)" >&2; exit 1; }
done
# (Re)made when the requirements change.
if ! cmp -s "$REQ" "$VENV/requirements.txt" 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/requirements.txt"
fi
exec "$VENV/bin/python" deploy/check.py
