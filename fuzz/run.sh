#!/usr/bin/env bash
# Runs every fuzz target in turn for SECONDS_PER_TARGET seconds (default 60) from the committed corpus
# and prints executions and crashes per target; exits non-zero if any target crashed.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). One target runs at
# a time, on one core. New corpus entries go to fuzz/target/corpus-new/<target>/ (not committed: keep
# only what a regression needs); crashes go to fuzz/artifacts/<target>/.
#
# FUZZ_SANITIZER (default `none`): `address` for AddressSanitizer, several times slower. The bodies are
# safe Rust; the C and FFI parts (aws-lc, OpenSSL) are not instrumented either way. Debug assertions
# (overflow checks) are always on.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
seconds="${1:-60}"
shift || true
export CARGO_TARGET_DIR="$here/target"
sanitizer="${FUZZ_SANITIZER:-none}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -s "$sanitizer" -a >&2

failed=0
printf '%-18s %14s %8s %8s\n' target executions crashes seconds
for target in "${targets[@]}"; do
    mkdir -p "artifacts/$target" "target/corpus-new/$target"
    log="target/fuzz-$target.log"
    start=$(date +%s)
    marker="target/run-$target.started"
    touch "$marker"
    status=0
    # The first corpus directory receives new inputs; the committed one is only read.
    cargo +nightly fuzz run -s "$sanitizer" -a "$target" "target/corpus-new/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
        -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    # Only this run's: fixed crashes keep their input in fuzz/corpus/, their artifact may stay here.
    crashes=$(find "artifacts/$target" -type f -newer "$marker" \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # libFuzzer failed without an artifact (a build or setup failure): see the log
    fi
    printf '%-18s %14s %8s %8s\n' "$target" "${execs:-?}" "$crashes" "$elapsed"
    if [ "$crashes" -ne 0 ]; then
        failed=1
        echo "  $target: see fuzz/$log and fuzz/artifacts/$target/" >&2
    fi
done
exit "$failed"
