#!/usr/bin/env bash
# Builds the clinic agents the self-update tests run (tests/integration/agent_update.rs), with the
# committed TEST release keys (tests/fixtures/release-test-key-*; never real ones) and the test
# crash hooks: 1.0.0 trusting keys 1 and 2, and 9.0.0 trusting key 2 only (the key rotation).
# Each is copied (stripped) out of the target dir; then the normal agent is built again. Only the
# agent crate rebuilds when these variables change. Run by tests/run.sh; cargo's arguments can be
# given (default: those of tests/run.sh's build, so nothing else rebuilds).
set -euo pipefail
cd "$(dirname "$0")/.."
TDIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
OUT=$TDIR/agent-update-bins
ARGS=("$@")
((${#ARGS[@]})) || ARGS=(--workspace --all-features --all-targets --locked)
key() { tail -n 1 "tests/fixtures/release-test-key-$1.pub"; }
mkdir -p "$OUT"
build() { # version slot1 slot2 name
  NINSHO_AGENT_VERSION=$1 NINSHO_AGENT_RELEASE_KEY_1=$2 NINSHO_AGENT_RELEASE_KEY_2=$3 NINSHO_AGENT_TEST_HOOKS=1 \
    cargo build "${ARGS[@]}"
  strip -o "$OUT/$4" "$TDIR/debug/card-agent"
}
build 1.0.0 "$(key 1)" "$(key 2)" card-agent-1.0.0
build 9.0.0 "$(key 2)" "" card-agent-9.0.0-rotated
cargo build "${ARGS[@]}"
echo "agent builds for the self-update tests in $OUT"
