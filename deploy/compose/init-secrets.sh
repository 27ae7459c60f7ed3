#!/bin/sh
# The secrets-init service of deploy/compose.yaml (busybox, as root, no network). Compose mounts
# file secrets with the owner and mode they have on the host, which the gateway's user (65532)
# either cannot read or, when they are readable by others, the gateway refuses (decision 0014).
# This copies them into the gateway-secrets volume, owned by 65532 and mode 0400, and writes the
# database URL from the PostgreSQL password. Every problem stops it with a message naming the file.
# The three variables are for deploy/check.py, which runs this script on temporary directories.
set -eu
umask 077
in=${SECRETS_IN:-/run/secrets}
out=${SECRETS_OUT:-/out}
owner=${GATEWAY_UID:-65532}
fail() { echo "secrets-init: $*" >&2; exit 1; }

copy() { # copy SECRET-NAME FILE-NAME
  src=$in/$1
  [ -s "$src" ] || fail "deploy/secrets/$2 is missing or empty (compose secret $1)"
  cp "$src" "$out/.$2.tmp"
  chown "$owner:$owner" "$out/.$2.tmp"
  chmod 0400 "$out/.$2.tmp"
  mv -f "$out/.$2.tmp" "$out/$2"
}

[ -s "$in/db_password" ] || fail "deploy/secrets/db_password is missing or empty"
password=$(cat "$in/db_password")
case "$password" in
  *[!A-Za-z0-9._~-]*) fail "deploy/secrets/db_password must be one line of letters, digits and . _ ~ - (it is written into the database URL as it is); for example: openssl rand -hex 24 > deploy/secrets/db_password" ;;
esac
[ "${#password}" -ge 16 ] || fail "deploy/secrets/db_password must be at least 16 characters"

chown "$owner:$owner" "$out"
chmod 0700 "$out"
copy token_kek token_kek
copy audit_key audit_key
copy tls_cert server.pem
copy tls_key server.key
printf 'postgres://ninsho:%s@db:5432/ninsho\n' "$password" > "$out/.database_url.tmp"
chown "$owner:$owner" "$out/.database_url.tmp"
chmod 0400 "$out/.database_url.tmp"
mv -f "$out/.database_url.tmp" "$out/database_url"
echo "secrets-init: wrote token_kek, audit_key, server.pem, server.key and database_url for uid $owner"
