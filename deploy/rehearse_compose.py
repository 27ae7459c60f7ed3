"""A rehearsal of deploy/compose.yaml without a container engine (deploy/check.py runs it).

The same files the containers use, as processes on loopback: compose/init-secrets.sh writes the
secrets, two `gateway serve` read compose/gateway.toml (only the paths, addresses and the
database, which compose.yaml gives the containers, differ), haproxy runs compose/haproxy.cfg with
the two instances' loopback addresses. Then, through the balancer with the clinic's client
certificate: pages from both instances, a login POST with the public origin answered by the
login check (never by the Origin refusal) on both, `gateway healthcheck` failing at once on
SIGTERM, and haproxy taking that instance out while the other serves on.

Needs the gateway binary (NINSHO_GATEWAY_BIN), a PostgreSQL server (TEST_DATABASE_URL), psql,
curl and haproxy; tests/run.sh provides all of them.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
WRONG_PASSWORD_PAGE = "ログインIDまたはパスワードが正しくありません"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, test, seconds: float = 60.0):
    """Polls `test` until it returns a true value (bounded: processes starting or stopping)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = test()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")


def rehearse(gateway: str, admin_url: str) -> list[str]:
    try:
        _rehearse(gateway, admin_url)
        return []
    except (AssertionError, subprocess.CalledProcessError, OSError) as e:
        detail = getattr(e, "stderr", None) or getattr(e, "output", None) or ""
        return [f"compose rehearsal: {e} {str(detail).strip()[-1500:]}".strip()]


def _rehearse(gateway: str, admin_url: str) -> None:
    database = f"ninsho_t_compose_{secrets.token_hex(6)}"
    url = re.sub(r"/[^/]*$", f"/{database}", admin_url)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lb, health = free_port(), free_port()
        ports = [(free_port(), free_port()) for _ in range(2)]
        # The demo's PKI: a server certificate for localhost, a clinic CA, CRL and client.
        demo = subprocess.run([gateway, "demo", "--dir", str(tmp / "demo"), "--no-serve", "--port", str(lb)],
                              check=True, capture_output=True, text=True, env=clean_env())
        p12_password = re.search(r"PKCS#12 password: (\S+)", demo.stdout).group(1)
        # The secrets, as secrets-init writes them (with this user as the owner).
        given, written = tmp / "given", tmp / "secrets"
        given.mkdir()
        written.mkdir()
        for name, text in (("db_password", secrets.token_hex(24)), ("token_kek", key()), ("audit_key", key()),
                           ("tls_cert", (tmp / "demo/tls/server.pem").read_text()),
                           ("tls_key", (tmp / "demo/tls/server.key").read_text())):
            (given / name).write_text(text + ("\n" if not text.endswith("\n") else ""))
        subprocess.run(["sh", str(DEPLOY / "compose/init-secrets.sh")], check=True, capture_output=True, text=True,
                       env=dict(os.environ, SECRETS_IN=str(given), SECRETS_OUT=str(written), GATEWAY_UID=str(os.getuid())))
        # compose.yaml's PostgreSQL is the host "db"; here it is the test server.
        (written / "database_url").chmod(0o600)
        (written / "database_url").write_text(url + "\n")
        (written / "database_url").chmod(0o400)
        config = tmp / "gateway.toml"
        config.write_text((DEPLOY / "compose/gateway.toml").read_text().replace("/run/ninsho/secrets", str(written)))
        subprocess.run(["psql", admin_url, "-qc", f"CREATE DATABASE {database}"], check=True, capture_output=True, text=True)
        try:
            env = dict(clean_env(), GATEWAY_CONFIG=str(config), GATEWAY_SERVER__PUBLIC_URL=f"https://localhost:{lb}",
                       GATEWAY_DATA_DIR=str(tmp / "data-admin"))
            demo = tmp / "demo"
            # What the first instance's start does under `docker compose up`: admin commands never
            # create or upgrade a schema.
            subprocess.run([gateway, "migrate"], check=True, capture_output=True, text=True, env=env)
            for args in (["anchor", "add", "--kind", "clinic", str(demo / "clinic/ca.pem"), "--crl", str(demo / "clinic/crl.der")],
                         ["clinic", "add", "--id", "21234", "--name", "リハーサル内科"],
                         ["clinic-cert", "add", "--clinic", "21234", str(demo / "clinic/client.pem")]):
                subprocess.run([gateway, "admin", *args], check=True, capture_output=True, text=True, env=env)
            for i, (main, ops) in enumerate(ports, 1):
                instance = dict(env, GATEWAY_SERVER__LISTEN=f"127.0.0.1:{main}", GATEWAY_OPS__LISTEN=f"127.0.0.1:{ops}",
                                GATEWAY_DATA_DIR=str(tmp / f"data-{i}"))
                log = open(tmp / f"gateway-{i}.log", "w")
                procs.append(subprocess.Popen([gateway, "serve"], env=instance, stdout=log, stderr=log))

            def healthcheck(ops: int) -> int:
                return subprocess.run([gateway, "healthcheck", "--url", f"http://127.0.0.1:{ops}/readyz"],
                                      capture_output=True, env=clean_env()).returncode

            for i, (_, ops) in enumerate(ports, 1):
                wait_for(f"gateway-{i} to be ready", lambda ops=ops: healthcheck(ops) == 0)
            cfg = (DEPLOY / "compose/haproxy.cfg").read_text()
            cfg = cfg.replace("bind :8443", f"bind 127.0.0.1:{lb}").replace("bind :8404", f"bind 127.0.0.1:{health}")
            cfg = cfg.replace("check port 9090 ", "check ")
            for i, (main, ops) in enumerate(ports, 1):
                cfg = cfg.replace(f"server gateway-{i} gateway-{i}:8443", f"server gateway-{i} 127.0.0.1:{main} check port {ops}")
            (tmp / "haproxy.cfg").write_text(cfg)
            haproxy_log = tmp / "haproxy.log"
            procs.append(subprocess.Popen(["haproxy", "-f", str(tmp / "haproxy.cfg")], stdout=open(haproxy_log, "w"),
                                          stderr=subprocess.STDOUT))

            def up(server: str) -> bool:  # no state change logged yet: up since the start
                text = haproxy_log.read_text()
                last = text.rfind(f"{server} is ")
                return last < 0 or text.startswith(f"{server} is UP", last)

            wait_for("haproxy to see both instances up", lambda: up("gateway-1") and up("gateway-2"))
            wait_for("the balancer to answer", lambda: curl(tmp, p12_password, lb, "/login")[0] == "200")

            # Pages, then login POSTs, through the one public origin, answered by both instances (a new
            # login ID each time: the lockout counts failures per ID). The POSTs' answer is the login
            # check's page, never the Origin refusal, whichever instance gives it.
            for _ in range(4):
                code, _ = curl(tmp, p12_password, lb, "/login")
                assert code == "200", f"GET /login through the balancer answered {code}"
            posts_from = len(haproxy_log.read_text())
            for n in range(6):
                code, body = curl(tmp, p12_password, lb, "/login", post={"login_id": f"doctor{n}", "password": "wrong password"},
                                  origin=f"https://localhost:{lb}")
                assert WRONG_PASSWORD_PAGE in body, f"login POST through the balancer answered {code} without the login check's page"
            wait_for("haproxy to log the POSTs' connections",
                     lambda: len(re.findall(r"\] https gateways/", haproxy_log.read_text()[posts_from:])) >= 6, 10)
            served = set(re.findall(r"\] https gateways/(gateway-\d) ", haproxy_log.read_text()[posts_from:]))
            assert served == {"gateway-1", "gateway-2"}, f"the login POSTs went to {served}, not to both instances"

            # SIGTERM: unready at once, out of the balancer, the other instance serves on.
            # (haproxy logs a connection when it closes, and a server's state changes as they happen.)
            start = len(haproxy_log.read_text())
            procs[0].send_signal(signal.SIGTERM)
            wait_for("gateway-1's healthcheck to fail after SIGTERM", lambda: healthcheck(ports[0][1]) == 1, 10)
            wait_for("haproxy to take gateway-1 out", lambda: "gateway-1 is DOWN" in haproxy_log.read_text()[start:], 10)
            text = haproxy_log.read_text()
            down = text.index("gateway-1 is DOWN", start)
            assert "Layer7 wrong status, code: 503" in text[down:down + 200], f"not taken out by /readyz: {text[down:down + 200]}"
            for _ in range(3):
                code, _ = curl(tmp, p12_password, lb, "/login")
                assert code == "200", f"GET /login during gateway-1's drain answered {code}"
            # haproxy writes a connection's log line when the connection closes, which may come after
            # curl has its answer: wait for the three lines before reading who served them.
            wait_for("haproxy to log the drain's connections",
                     lambda: len(re.findall(r"\] https gateways/", haproxy_log.read_text()[down:])) >= 3, 10)
            tail = haproxy_log.read_text()[down:]
            assert not re.search(r"\] https gateways/gateway-1 ", tail), f"a connection went to the draining instance: {tail}"
            assert len(re.findall(r"\] https gateways/gateway-2 ", tail)) >= 3, tail
            wait_for("gateway-1 to exit after its drain", lambda: procs[0].poll() is not None, 60)
            assert procs[0].returncode == 0, f"gateway-1 exited with {procs[0].returncode}"
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
            subprocess.run(["psql", admin_url, "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], capture_output=True)


def key() -> str:
    import base64

    return base64.b64encode(secrets.token_bytes(32)).decode()


def clean_env() -> dict[str, str]:
    """The environment without GATEWAY_* settings of the caller."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


def curl(tmp: Path, p12_password: str, port: int, path: str, post: dict | None = None, origin: str | None = None):
    cmd = ["curl", "-s", "--max-time", "10", "--cert-type", "P12", "--cert", f"{tmp}/demo/clinic/client.p12:{p12_password}",
           "--cacert", f"{tmp}/demo/tls/server-ca.pem", "-w", "\n%{http_code}", f"https://localhost:{port}{path}"]
    if origin:
        cmd += ["-H", f"Origin: {origin}"]
    for k, v in (post or {}).items():
        cmd += ["--data-urlencode", f"{k}={v}"]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    body, _, code = out.rpartition("\n")
    return code, body
