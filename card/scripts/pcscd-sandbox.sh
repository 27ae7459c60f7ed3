#!/bin/sh
# Runs pcscd (with the vsmartcard vpcd reader) in a private network + mount namespace.
# Usage (as root):  unshare --mount --net -- sh card/scripts/pcscd-sandbox.sh RUNDIR
#   - brings up loopback, so vpcd's 0.0.0.0:35963/35964 listeners exist only inside the namespace;
#   - bind-mounts RUNDIR over /run/pcscd, so the socket is RUNDIR/pcscd.comm on the host
#     (clients: PCSCLITE_CSOCK_NAME=RUNDIR/pcscd.comm);
#   - execs pcscd, so the unshare process id is pcscd's; start cards with
#     nsenter --net=/proc/<that pid>/ns/net -- card-sim --kind jpki --dir DIR
# card::sim::harness embeds this file; keep it POSIX sh.
set -e
ip link set lo up
mkdir -p /run/pcscd
mount --bind "$1" /run/pcscd
exec pcscd --foreground --debug
