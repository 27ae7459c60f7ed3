#!/bin/sh
# Regenerates cases.json from an x509-limbo checkout. See README.md beside this file.
#
#   trust/tests/limbo/regenerate.sh /path/to/x509-limbo
#
# Needs x509-limbo's Python package and dependencies installed in the `python3` on PATH (a
# virtualenv with `pip install -e /path/to/x509-limbo`). Writes cases.json next to this script.
set -eu

limbo_src=$(cd "${1:?usage: regenerate.sh X509_LIMBO_CHECKOUT}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

commit=$(git -C "$limbo_src" rev-parse HEAD)
generated_at=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)

# x509-limbo reads its assets relative to its package; run from its checkout.
# Its generator logs every case; keep the log only to show it when generation fails.
for variant in client stock; do
  flag=; [ "$variant" = stock ] && flag=--stock
  (cd "$limbo_src" && python3 "$here/generate.py" $flag --output "$work/limbo-$variant.json") \
    >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
done
python3 "$here/select_cases.py" "$work/limbo-client.json" --stock "$work/limbo-stock.json" \
  --generated-at "$generated_at" --commit "$commit" > "$here/cases.json"
echo "cases.json: x509-limbo $commit, generated $generated_at"
