#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what is missing, builds, and runs every test
# on SQLite and PostgreSQL. Run as root on Debian 12 (apt installs); safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '\n== %s\n' "$*"; }

# --- system packages --------------------------------------------------------------------------
# libpcsclite-dev, pkg-config: the pcsc crate. libssl-dev, openssl: the trust crate (OpenSSL path
# validation, decision 0012) and the tests' independent openssl oracle. pcscd, vsmartcard-vpcd, pcsc-tools, opensc: the
# real PC/SC stack with a virtual reader and an independent card oracle. fonts-ipafont-gothic: a
# Japanese font, so the browser tests' screenshots of the pages (target/screenshots) are readable. curl: the demo smoke
# test's independent HTTPS client; jq: the demo test runs the printed signing commands, which use it. chromium: the browser tests (tests/e2e, driven by playwright-core;
# never a downloaded browser). nodejs/npm: only when the machine has no Node.js.
# postgresql: only when no server answers on 127.0.0.1:5432. haproxy, python3-venv: the offline
# checks of deploy/ (deploy/check.sh: `haproxy -c` of the compose load balancer, and a virtualenv
# for the Kubernetes and Compose schema checks; python3-venv also for the SCIM conformance tester). prometheus: its promtool checks and unit-tests the
# alert rules of deploy/monitoring (tests/integration/metrics.rs). softhsm2: the PKCS#11 module the
# signer's key backend is tested against (keys/tests/pkcs11.rs, a token store per test). xmlsec1: the
# independent XML-signature oracle for the e-prescription signature (xades/tests, the signDoc tests);
# libxml2-utils: xmllint, the independent canonicalisation oracle (xades/tests/c14n.rs).
PKGS=(libpcsclite-dev systemd libssl-dev openssl pkg-config curl jq pcscd vsmartcard-vpcd pcsc-tools opensc iproute2 util-linux chromium fonts-ipafont-gothic haproxy python3-venv prometheus softhsm2 xmlsec1 libxml2-utils)
command -v npm >/dev/null || PKGS+=(nodejs npm)
pg_up() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
pg_up || PKGS+=(postgresql)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then echo "tests/run.sh: run as root to install: ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Where systemd runs, the prometheus package starts its server (on :9090); only promtool is wanted.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# --- PostgreSQL ---------------------------------------------------------------------------------
if pg_up; then
  export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
else
  log "starting a throwaway PostgreSQL cluster"
  PGDIR=$ROOT/target/pg; PGPORT=54329; BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  if ! pg_isready -q -h 127.0.0.1 -p $PGPORT 2>/dev/null; then
    rm -rf "$PGDIR"; mkdir -p "$PGDIR"; chown postgres:postgres "$PGDIR"
    su postgres -c "$BIN/initdb -D '$PGDIR/data' -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8" >/dev/null
    su postgres -c "$BIN/pg_ctl -D '$PGDIR/data' -l '$PGDIR/pg.log' -w -o \"-p $PGPORT -k '$PGDIR' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300\" start" >/dev/null
  fi
  export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres
fi
# Databases left behind by interrupted runs.
psql "$TEST_DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'ninsho_t_%'" 2>/dev/null |
  while read -r db; do psql "$TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; done

# --- browser-test packages ------------------------------------------------------------------------
# playwright-core only (pinned in tests/e2e/package-lock.json); the tests use /usr/bin/chromium.
log "npm ci (tests/e2e)"
(cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
# The EMR's OpenID Connect provider of the upstream sign-in tests (panva's oidc-provider, pinned in
# tests/oidc/package-lock.json; tests/integration/oidc_login.rs, tests/e2e/oidc.mjs).
log "npm ci (tests/oidc)"
(cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)

# --- SCIM conformance tester ----------------------------------------------------------------------
# scim2-tester from PyPI (pinned in tests/scim/requirements.txt), an independent check of the SCIM
# endpoints, run by tests/integration/scim.rs through tests/scim/conformance.py; in a virtualenv
# under the target directory (python3-venv above).
log "SCIM conformance tester (tests/scim)"
SCIM_VENV=${CARGO_TARGET_DIR:-target}/scim-tester/venv
[ -x "$SCIM_VENV/bin/python" ] || python3 -m venv "$SCIM_VENV"
"$SCIM_VENV/bin/pip" install -q --disable-pip-version-check -r tests/scim/requirements.txt
export NINSHO_TEST_SCIM_VENV=$(realpath "$SCIM_VENV")

# --- Rust tests ---------------------------------------------------------------------------------
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
log "building"
cargo build --workspace --all-features --all-targets --locked
# The self-update tests (tests/integration/agent_update.rs) run two more agent builds (other
# versions, the test release keys, test crash hooks); the normal build is restored after them.
log "agent builds for the self-update tests"
./tests/build-update-agents.sh
export NINSHO_TEST_AGENT_UPDATE_BINS=$(realpath "${CARGO_TARGET_DIR:-target}/agent-update-bins")
# The process fault tests (tests/integration/faults/process.rs) run this gateway binary, just built.
export NINSHO_GATEWAY_BIN=$(realpath "${CARGO_TARGET_DIR:-target}/debug/gateway")
# The signer process tests (tests/integration/signer_process.rs) run this ninsho-signer. (Not
# NINSHO_SIGNER_BIN: the signer reads every NINSHO_SIGNER_* variable as configuration.)
export NINSHO_TEST_SIGNER_BIN=$(realpath "${CARGO_TARGET_DIR:-target}/debug/ninsho-signer")
# The deployment files (compose, haproxy, Kubernetes, Dockerfile), checked offline: these machines
# have no container engine and no cluster. Fails on a broken manifest, and shows that it does; with
# the binary above and PostgreSQL it also rehearses the compose setup as processes on loopback.
log "deployment files (deploy/check.sh)"
./deploy/check.sh
log "Rust tests (unit, card stack, integration and browser tests on SQLite and PostgreSQL)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --locked --no-fail-fast
else
  cargo test --workspace --all-features --locked --no-fail-fast
fi

# The benchmark harness (issue 7) on a 2-second budget per scenario, so it cannot rot: trivial
# mTLS server and a gateway on SQLite (token, FIDO, card, handshake) and the remote signer's signHash
# beside it (software keys and SoftHSM2); fails on any error. Full run: ./bench/run.sh.
log "benchmark harness smoke run"
"${CARGO_TARGET_DIR:-target}/debug/bench" run --smoke --gateway "${CARGO_TARGET_DIR:-target}/debug/gateway" \
  --work "${CARGO_TARGET_DIR:-target}/bench-smoke"
# The OQS relay scenario (issue 21) likewise, a few seconds: the gateway on SQLite, the clinic agent
# binary and the bench as EMR and terminal; fails on any error. Full run: `bench oqs --out BENCHMARKS.md`.
log "benchmark harness smoke run: OQS relay"
"${CARGO_TARGET_DIR:-target}/debug/bench" oqs --smoke --gateway "${CARGO_TARGET_DIR:-target}/debug/gateway" \
  --agent "${CARGO_TARGET_DIR:-target}/debug/card-agent" --work "${CARGO_TARGET_DIR:-target}/bench-oqs-smoke" >/dev/null

log "all tests passed"
