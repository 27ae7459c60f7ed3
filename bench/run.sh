#!/usr/bin/env bash
# The benchmark command (issue 7). Builds the gateway and the harness in release mode into a
# separate target directory (so the shared debug build is not evicted), installs the peer
# (oidc-provider, pinned in bench/peer/package-lock.json) and runs `bench run`, which prints one
# table and writes BENCHMARKS.md.
#
#   ./bench/run.sh                      # full run, ~10-15 min on 2 cores
#   ./bench/run.sh --duration 5         # shorter scenarios (any `bench run --help` option)
#   ./bench/run.sh --smoke              # 2-second harness check (what tests/run.sh runs)
#   ./bench/run.sh --sign-hash-only     # only the remote signer's signHash (issue 19): replaces
#                                       # its section of BENCHMARKS.md, keeps the rest
#   ./bench/run.sh soak --duration 30m --out BENCHMARKS.md   # only the soak (issue 16)
#   BENCH_SOAK=30m ./bench/run.sh       # the full run, then a soak of that length on SQLite
#
# PostgreSQL: by default the harness starts a server of its own for the run (a fresh cluster
# under the work directory, tuned like a small production server, fsync and synchronous_commit
# on, pg_stat_statements loaded; bench/src/pgserver.rs), so other users of a shared server do not
# move the figures. BENCH_DATABASE_URL=postgres://… (or --pg URL) uses that server instead; it
# must accept CREATE DATABASE. --pg '' skips PostgreSQL. BENCH_PG_SETTINGS=name=value,… adds
# server settings for a side measurement (the report lists them). Set BENCH_SKIP_BUILD=1 to reuse
# the binaries in $BENCH_BIN (default $CARGO_TARGET_DIR/release).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
BIN=${BENCH_BIN:-$CARGO_TARGET_DIR/release}
smoke=0
for a in "$@"; do [ "$a" = --smoke ] && smoke=1; done

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "== building gateway and bench (release, $CARGO_TARGET_DIR)" >&2
  cargo build --release --locked -p gateway -p bench >&2
fi
if [ $smoke = 0 ] && command -v npm >/dev/null; then
  echo "== npm ci (bench/peer)" >&2
  (cd bench/peer && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
if [ "${1:-}" = soak ]; then
  shift
  exec "$BIN/bench" soak --gateway "$BIN/gateway" "$@"
fi
"$BIN/bench" run --gateway "$BIN/gateway" "$@"
# The soak loads both cores for its whole length; it runs only when asked for.
if [ -n "${BENCH_SOAK:-}" ] && [ $smoke = 0 ]; then
  "$BIN/bench" soak --gateway "$BIN/gateway" --duration "$BENCH_SOAK" --out BENCHMARKS.md
fi
