#!/bin/sh
# Used by deploy/Dockerfile's dependency layer: with only the workspace's Cargo.toml files and
# Cargo.lock copied, writes an empty source file at every target path the manifests name (and an
# empty src/lib.rs per member), so `cargo build -p gateway` builds every dependency once and that
# layer is reused until a manifest or the lock file changes. The real sources replace the stubs in
# the next layer. deploy/check.sh runs this script on a copy of the manifests and loads the result
# with `cargo metadata --locked`, so a new member or target cannot break the image build unseen.
# Usage: deploy/stub-workspace.sh [DIR]   (DIR: the workspace root, default .)
set -eu
cd "${1:-.}"
members=$(sed -n '/^members *=/{s/^members *= *\[//;s/\].*//;s/[",]/ /g;p;}' Cargo.toml)
if [ -z "$members" ]; then
  echo "stub-workspace.sh: no members = [...] line in $(pwd)/Cargo.toml" >&2
  exit 1
fi
for m in $members; do
  if [ ! -f "$m/Cargo.toml" ]; then
    echo "stub-workspace.sh: workspace member $m has no $m/Cargo.toml (copy it before this step)" >&2
    exit 1
  fi
  mkdir -p "$m/src"
  [ -e "$m/src/lib.rs" ] || : > "$m/src/lib.rs"
  # Every `path = "…"` of a [lib], [[bin]], [[test]], [[bench]] or [[example]] table.
  for p in $(sed -n 's/^path *= *"\([^"]*\)".*/\1/p' "$m/Cargo.toml"); do
    mkdir -p "$m/$(dirname "$p")"
    case "$p" in
      */lib.rs) [ -e "$m/$p" ] || : > "$m/$p" ;;
      *) [ -e "$m/$p" ] || echo 'fn main() {}' > "$m/$p" ;;
    esac
  done
done
