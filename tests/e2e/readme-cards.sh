#!/bin/sh
# The README's card walk-through ("Try it with the demo cards"), as a file: a private pcscd with the
# vpcd virtual reader, the demo's My Number card in it, and the card agent for the demo's origin.
# Run from the repository root, as root, after `gateway demo` and the README's build command; Ctrl-C
# stops everything. tests/integration/e2e.rs runs this file and checks that README.md shows the
# same commands (the lines between the two markers).
set -eu
# --- README ---
DEMO=${DEMO:-ninsho-demo}         # gateway demo --dir
PORT=${PORT:-8443}                # gateway demo --port: the page's origin is https://localhost:$PORT
AGENT_PORT=${AGENT_PORT:-18443}   # the port of [card] agent_url in $DEMO/gateway.toml
BIN=${BIN:-target/release}        # where cargo built card-sim and card-agent
RUN=$(realpath "$DEMO")/pcscd && mkdir -p "$RUN"
# pcscd in its own network namespace: vpcd listens on every interface, but that namespace has only
# its own loopback (no systemd needed). Clients find it through PCSCLITE_CSOCK_NAME.
unshare --mount --net -- sh card/scripts/pcscd-sandbox.sh "$RUN" > "$RUN/pcscd.log" 2>&1 &
PCSCD=$!
while [ ! -S "$RUN/pcscd.comm" ]; do sleep 0.1; done
export PCSCLITE_CSOCK_NAME=$RUN/pcscd.comm
# The demo's My Number card (PIN 1234) in the first virtual reader, inside pcscd's namespace.
nsenter --net=/proc/$PCSCD/ns/net -- "$BIN/card-sim" --kind jpki --dir "$DEMO/cards/jpki" --pin 1234 &
# The card agent on 127.0.0.1:$AGENT_PORT, answering the demo's pages only.
"$BIN/card-agent" --allow-origin "https://localhost:$PORT" --port "$AGENT_PORT" &
# --- README ---
wait
