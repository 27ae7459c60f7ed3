#!/usr/bin/env python3
"""Offline checks of the deployment files in deploy/ (no container engine, no cluster).

Run by deploy/check.sh (which makes the virtualenv with the pinned packages of
deploy/check-requirements.txt), itself a step of tests/run.sh:

- compose.yaml: valid against the Compose Specification's JSON schema (as vendored by
  check-jsonschema), every reference (depends_on, secrets, volumes, bind-mounted files) defined,
  nothing defined and unused, and what the gateway needs: a restart policy, a healthcheck, a grace
  period covering compose/gateway.toml's drain plus 30 s, no secret in the environment, and the
  load balancer's servers (compose/haproxy.cfg) exactly the gateway services.
- compose/haproxy.cfg: `haproxy -c`, with no warning but the unresolvable compose host names.
- compose/init-secrets.sh: run on temporary directories (private copies, the database URL, and
  clear refusals of a password unfit for a URL and of a missing secret).
- k8s/gateway.yaml: every resource valid against the Kubernetes schemas (kubernetes-validate,
  strict: unknown fields are errors) for the oldest and newest Kubernetes versions we support,
  every pod template admitted by the Pod Security Standards' "restricted" level (pod_security()
  below), the ConfigMap carrying k8s/gateway.toml verbatim, the grace period covering the drain,
  no secret in the environment, and the selectors of the Service, PodDisruptionBudget and
  NetworkPolicy matching the pods.
- Dockerfile: no GATEWAY_* setting but GATEWAY_CONFIG baked in, a numeric non-root USER, every
  workspace member's Cargo.toml copied into the dependency layer; and stub-workspace.sh's tree
  loads with `cargo tree --locked`.

With NINSHO_GATEWAY_BIN and TEST_DATABASE_URL (tests/run.sh sets both), rehearse_compose.py also
runs the compose setup as processes on loopback: the same configuration, secrets script and
haproxy.cfg, two real gateways on PostgreSQL, requests through the balancer, a drain.

Then the same checks run on deliberately broken copies, each of which must be refused: a check
that passes everything would pass them too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import yaml
from kubernetes_validate import utils as kubernetes_validate

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
# The oldest Kubernetes version the manifest is meant for, and the newest the schemas know.
K8S_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
# The gateway's shutdown after the drain: open requests get up to 30 s (gateway/src/server.rs).
REQUEST_GRACE_SECS = 30
GATEWAY_IMAGE = "ninsho-gateway"
# Environment variables that may be set on a gateway container: no secret among them.
ALLOWED_GATEWAY_ENV = {"GATEWAY_SERVER__PUBLIC_URL", "GATEWAY_CONFIG", "RUST_LOG"}


def compose_schema() -> dict:
    import json

    import check_jsonschema

    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def duration_secs(text) -> float:
    """A Compose duration ("45s", "1m30s", "1h") in seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        raise ValueError(f"not a duration: {text!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def names(entries) -> list[str]:
    """Names from a Compose list of strings or {source:/target:} entries, or a mapping."""
    if isinstance(entries, dict):
        return list(entries)
    return [e if isinstance(e, str) else e.get("source", "") for e in entries or []]


# --- compose ------------------------------------------------------------------------------------


def check_compose(text: str, base: Path, gateway_toml: str, haproxy_cfg: str) -> list[str]:
    problems = []
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return [f"compose.yaml does not parse: {e}"]
    if not isinstance(doc, dict):
        return ["compose.yaml is not a mapping"]
    for e in sorted(jsonschema.Draft202012Validator(compose_schema()).iter_errors(doc), key=str):
        where = ".".join(str(p) for p in e.absolute_path) or "(top)"
        problems.append(f"compose.yaml: {where}: {e.message}")
    services = doc.get("services") or {}
    secrets = doc.get("secrets") or {}
    volumes = doc.get("volumes") or {}
    used_secrets, used_volumes = set(), set()
    drain = tomllib.loads(gateway_toml).get("server", {}).get("shutdown_drain_secs", 5)
    for name, svc in services.items():
        svc = svc or {}
        for dep in names(svc.get("depends_on")):
            if dep not in services or dep == name:
                problems.append(f"compose.yaml: service {name} depends on {dep!r}, which is not another service")
        for s in names(svc.get("secrets")):
            used_secrets.add(s)
            if s not in secrets:
                problems.append(f"compose.yaml: service {name} uses secret {s!r}, which is not defined")
        for v in svc.get("volumes") or []:
            source = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    problems.append(f"compose.yaml: service {name} mounts {source}, which does not exist")
            elif source:
                used_volumes.add(source)
                if source not in volumes:
                    problems.append(f"compose.yaml: service {name} mounts volume {source!r}, which is not defined")
        if svc.get("image") == GATEWAY_IMAGE:
            problems += check_compose_gateway(name, svc, drain)
        elif svc.get("restart") is None:
            problems.append(f"compose.yaml: service {name} has no restart policy")
    for s, spec in secrets.items():
        if s not in used_secrets:
            problems.append(f"compose.yaml: secret {s} is defined but no service uses it")
        file = (spec or {}).get("file", "")
        if file and not file.startswith("./secrets/"):
            problems.append(f"compose.yaml: secret {s} should be a file under ./secrets/ (kept out of git and the image)")
    for v in volumes:
        if v not in used_volumes:
            problems.append(f"compose.yaml: volume {v} is defined but no service mounts it")
    gateways = sorted(n for n, s in services.items() if (s or {}).get("image") == GATEWAY_IMAGE)
    if len(gateways) < 2:
        problems.append("compose.yaml: fewer than two gateway services")
    balanced = sorted(re.findall(r"^\s*server\s+\S+\s+([^\s:]+):8443\b", haproxy_cfg, re.M))
    if balanced != gateways:
        problems.append(f"haproxy.cfg balances {balanced}, compose.yaml has gateways {gateways}")
    published = [n for n, s in services.items() if any(str(p).endswith(":8443") for p in (s or {}).get("ports") or [])]
    if published != [n for n, s in services.items() if "haproxy" in str((s or {}).get("image", ""))]:
        problems.append(f"compose.yaml: port 8443 must be published by the load balancer alone, not {published}")
    return problems


def check_compose_gateway(name: str, svc: dict, drain: int) -> list[str]:
    problems = []
    if svc.get("restart") in (None, "no"):
        problems.append(f"compose.yaml: gateway {name} has no restart policy")
    if not (svc.get("healthcheck") or {}).get("test"):
        problems.append(f"compose.yaml: gateway {name} has no healthcheck")
    grace = svc.get("stop_grace_period")
    try:
        secs = duration_secs(grace) if grace is not None else 10.0  # Docker's default
    except ValueError as e:
        return problems + [f"compose.yaml: gateway {name}: stop_grace_period: {e}"]
    if secs < drain + REQUEST_GRACE_SECS:
        problems.append(
            f"compose.yaml: gateway {name} stop_grace_period {secs:g} s is shorter than the drain "
            f"({drain} s) plus {REQUEST_GRACE_SECS} s for open requests"
        )
    env = svc.get("environment") or {}
    keys = env if isinstance(env, dict) else [e.split("=")[0] for e in env]
    for key in keys:
        if key not in ALLOWED_GATEWAY_ENV:
            problems.append(f"compose.yaml: gateway {name} sets {key} in the environment; secrets are files (*_file keys)")
    if svc.get("env_file"):
        problems.append(f"compose.yaml: gateway {name} reads an env_file; secrets are files (*_file keys)")
    return problems


def check_haproxy(path: Path) -> list[str]:
    if shutil.which("haproxy") is None:
        return ["haproxy is not installed (apt-get install haproxy; tests/run.sh does)"]
    run = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    out = run.stdout + run.stderr
    if run.returncode != 0:
        alerts = [l for l in out.splitlines() if "ALERT" in l] or [out.strip()]
        return [f"haproxy -c {path.name}: {a}" for a in alerts]
    warnings = [l for l in out.splitlines() if "WARNING" in l and "could not resolve address" not in l]
    return [f"haproxy -c {path.name}: {w}" for w in warnings]


# --- Kubernetes ---------------------------------------------------------------------------------

# The Pod Security Standards, "baseline" and "restricted" controls, for Linux pods. Written here
# because nothing installable offline evaluates them (decision 0014).
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def pod_security(where: str, meta: dict, spec: dict) -> list[str]:
    """Violations of the "restricted" level (which includes "baseline") by one pod."""
    problems = []
    bad = problems.append
    pod_sc = spec.get("securityContext") or {}
    containers = [
        (kind, c) for kind in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(kind) or []
    ]
    # baseline: host namespaces, HostProcess, hostPath, host ports, privileged, capabilities,
    # AppArmor, SELinux, /proc mount, seccomp, sysctls.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad(f"{where}: {field} is set")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        bad(f"{where}: windowsOptions.hostProcess is set")
    for v in spec.get("volumes") or []:
        types = [k for k in v if k != "name"]
        if "hostPath" in types:
            bad(f"{where}: volume {v.get('name')} is a hostPath")
        for t in types:
            if t not in RESTRICTED_VOLUMES:
                bad(f"{where}: volume {v.get('name')} has type {t}, not allowed under restricted")
    for s in pod_sc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            bad(f"{where}: sysctl {s.get('name')} is not in the safe set")
    for key, value in ((meta or {}).get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/"):
            if value != "runtime/default" and not value.startswith("localhost/"):
                bad(f"{where}: AppArmor annotation {key} = {value}")
    contexts = [("pod", pod_sc)] + [(f"{kind} {c.get('name')}", c.get("securityContext") or {}) for kind, c in containers]
    for name, sc in contexts:
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            bad(f"{where}: {name}: appArmorProfile {apparmor}")
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            bad(f"{where}: {name}: seLinuxOptions {selinux}")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            bad(f"{where}: {name}: seccompProfile Unconfined")
        if sc.get("runAsUser") == 0:
            bad(f"{where}: {name}: runAsUser 0")
        if sc.get("runAsNonRoot") is False:
            bad(f"{where}: {name}: runAsNonRoot false")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    for kind, c in containers:
        name = f"{kind} {c.get('name')}"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad(f"{where}: {name}: privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad(f"{where}: {name}: windowsOptions.hostProcess")
        if sc.get("procMount", "Default") != "Default":
            bad(f"{where}: {name}: procMount {sc.get('procMount')}")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                bad(f"{where}: {name}: hostPort {p.get('hostPort')}")
        # restricted
        if sc.get("allowPrivilegeEscalation") is not False:
            bad(f"{where}: {name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad(f"{where}: {name}: capabilities must drop ALL")
        for cap in caps.get("add") or []:
            if cap != "NET_BIND_SERVICE":
                bad(f"{where}: {name}: adds capability {cap}")
        if not (sc.get("runAsNonRoot") is True or (pod_sc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is None)):
            bad(f"{where}: {name}: runAsNonRoot must be true (pod or container)")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad(f"{where}: {name}: seccompProfile must be RuntimeDefault or Localhost (pod or container)")
    return problems


def pod_templates(doc: dict):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        yield doc.get("metadata") or {}, spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        t = spec.get("template") or {}
        yield t.get("metadata") or {}, t.get("spec") or {}
    elif kind == "CronJob":
        t = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        yield t.get("metadata") or {}, t.get("spec") or {}


def check_k8s(text: str, gateway_toml: str) -> list[str]:
    problems = []
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        return [f"k8s/gateway.yaml does not parse: {e}"]
    for doc in docs:
        what = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"k8s {what} (Kubernetes {version}): {path}: {e.message}")
            except Exception as e:  # an unknown kind or apiVersion is an error here, not a warning
                problems.append(f"k8s {what} (Kubernetes {version}): {getattr(e, 'message', e)}")
        for meta, spec in pod_templates(doc):
            problems += pod_security(f"k8s {what}", meta, spec)
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind"), []).append(doc)
    for kind in ("ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"):
        if len(by_kind.get(kind, [])) != 1:
            problems.append(f"k8s: expected one {kind}, found {len(by_kind.get(kind, []))}")
    if problems:
        return problems
    config = by_kind["ConfigMap"][0].get("data", {}).get("gateway.toml")
    if config != gateway_toml:
        problems.append("k8s: the ConfigMap's gateway.toml differs from deploy/k8s/gateway.toml (copy the file into it)")
    deployment = by_kind["Deployment"][0]
    template = deployment["spec"]["template"]
    labels = template.get("metadata", {}).get("labels", {})
    pod = template["spec"]
    drain = tomllib.loads(gateway_toml).get("server", {}).get("shutdown_drain_secs", 5)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < drain + REQUEST_GRACE_SECS:
        problems.append(f"k8s: terminationGracePeriodSeconds {grace} is shorter than the drain ({drain} s) plus {REQUEST_GRACE_SECS} s")
    for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        for e in c.get("env") or []:
            if "secretKeyRef" in (e.get("valueFrom") or {}):
                problems.append(f"k8s: container {c.get('name')} takes {e.get('name')} from a secret in the environment; mount it as a file")
        for e in c.get("envFrom") or []:
            if "secretRef" in e:
                problems.append(f"k8s: container {c.get('name')} takes its environment from a secret; mount it as a file")
    selects = lambda sel: bool(sel) and all(labels.get(k) == v for k, v in sel.items())  # noqa: E731
    if not selects(by_kind["Service"][0]["spec"].get("selector")):
        problems.append("k8s: the Service does not select the Deployment's pods")
    for kind in ("PodDisruptionBudget",):
        if not selects(by_kind[kind][0]["spec"].get("selector", {}).get("matchLabels")):
            problems.append(f"k8s: the {kind} does not select the Deployment's pods")
    policy = by_kind["NetworkPolicy"][0]["spec"]
    if not selects(policy.get("podSelector", {}).get("matchLabels")):
        problems.append("k8s: the NetworkPolicy does not select the Deployment's pods")
    if sorted(policy.get("policyTypes") or []) != ["Egress", "Ingress"]:
        problems.append("k8s: the NetworkPolicy must govern both Ingress and Egress")
    for rule in policy.get("ingress") or []:
        if any(p.get("port") in (9090, "ops") for p in rule.get("ports") or []) and not rule.get("from"):
            problems.append("k8s: the NetworkPolicy opens the ops port (9090) to every source")
    return problems


# --- Dockerfile ---------------------------------------------------------------------------------


def check_dockerfile(text: str, workspace_toml: str) -> list[str]:
    problems = []
    final = text[text.rfind("\nFROM ") :]
    for name in re.findall(r"\b(GATEWAY_[A-Z0-9_]+)=", text):
        if name != "GATEWAY_CONFIG":
            problems.append(f"Dockerfile bakes in {name}: it would override the mounted configuration")
    users = re.findall(r"^USER\s+(\S+)", final, re.M)
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]):
        problems.append(f"Dockerfile: the final USER must be a numeric non-root uid (runAsNonRoot can check it), not {users}")
    members = tomllib.loads(workspace_toml)["workspace"]["members"]
    copied = set(re.findall(r"^COPY\s+(\S+)/Cargo\.toml\s", text, re.M))
    for m in members:
        if m not in copied:
            problems.append(f"Dockerfile: the dependency layer does not copy {m}/Cargo.toml (workspace member)")
    return problems


def check_stub_workspace() -> list[str]:
    """stub-workspace.sh on a copy of the manifests: the tree must load with the lock file."""
    if shutil.which("cargo") is None:
        return ["cargo is not installed"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(ROOT / "Cargo.toml", tmp)
        shutil.copy(ROOT / "Cargo.lock", tmp)
        for m in tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]:
            (tmp / m).mkdir(parents=True)
            shutil.copy(ROOT / m / "Cargo.toml", tmp / m)
        run = subprocess.run(["sh", str(DEPLOY / "stub-workspace.sh"), str(tmp)], capture_output=True, text=True)
        if run.returncode != 0:
            return [f"stub-workspace.sh failed: {run.stderr.strip()}"]
        target = subprocess.run(["rustc", "-vV"], capture_output=True, text=True).stdout
        host = re.search(r"^host: (\S+)", target, re.M)
        cmd = ["cargo", "tree", "-p", "gateway", "--locked", "--offline", "-e", "normal,build", "--prefix", "none"]
        if host:
            cmd += ["--target", host.group(1)]
        run = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if run.returncode != 0:
            return [f"the stub workspace does not load ({' '.join(cmd)}): {run.stderr.strip()[-2000:]}"]
    return []


def check_secrets_init() -> list[str]:
    """compose/init-secrets.sh on temporary directories: private copies and the URL, or a clear
    refusal of a password that cannot go into a URL and of a missing secret."""
    problems = []
    script = DEPLOY / "compose" / "init-secrets.sh"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src, out = tmp / "in", tmp / "out"
        src.mkdir()
        out.mkdir()
        for name in ("token_kek", "audit_key", "tls_cert", "tls_key"):
            (src / name).write_text(f"{name}-content\n")
        env = dict(os.environ, SECRETS_IN=str(src), SECRETS_OUT=str(out), GATEWAY_UID=str(os.getuid()))

        def run(password: str) -> subprocess.CompletedProcess:
            (src / "db_password").write_text(password)
            return subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)

        done = run("0123456789abcdef0123\n")
        if done.returncode != 0:
            return [f"init-secrets.sh failed on good secrets: {done.stderr.strip()}"]
        url = (out / "database_url").read_text()
        if url != "postgres://ninsho:0123456789abcdef0123@db:5432/ninsho\n":
            problems.append(f"init-secrets.sh wrote the database URL {url!r}")
        for name in ("token_kek", "audit_key", "server.pem", "server.key", "database_url"):
            mode = (out / name).stat().st_mode & 0o777
            if mode != 0o400:
                problems.append(f"init-secrets.sh left {name} mode {mode:o}, not 400")
        if (out / "server.key").read_text() != "tls_key-content\n":
            problems.append("init-secrets.sh did not copy tls_key to server.key")
        for bad, says in (("pass word with spaces 123", "letters, digits"), ("short1", "at least 16"), ("p@ss/word#0123456789", "letters, digits")):
            refused = run(bad)
            if refused.returncode == 0 or says not in refused.stderr:
                problems.append(f"init-secrets.sh accepted the password {bad!r} or did not say why: {refused.stderr.strip()}")
        (src / "audit_key").unlink()
        refused = run("0123456789abcdef0123")
        if refused.returncode == 0 or "audit_key is missing" not in refused.stderr:
            problems.append(f"init-secrets.sh did not refuse a missing audit_key: {refused.stderr.strip()}")
    return problems


# --- the clinic agent's systemd unit ----------------------------------------------------------------


def unit_settings(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values, in order, of a systemd unit file."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def check_agent_unit(text: str) -> list[str]:
    """deploy/clinic/ninsho-agent.service: what the clinic agent needs of its service manager, and
    `systemd-analyze verify` (the binary path pointed at a stand-in, as it is not installed here)."""
    problems = []
    u = unit_settings(text)
    one = lambda section, key: (u.get((section, key)) or [None])[-1]  # noqa: E731
    wants = {
        ("Service", "Restart"): "always",
        ("Service", "KillSignal"): "SIGTERM",
        ("Service", "NoNewPrivileges"): "yes",
        ("Service", "UMask"): "0077",
        ("Service", "StateDirectoryMode"): "0700",
        ("Install", "WantedBy"): "multi-user.target",
    }
    for (section, key), value in wants.items():
        if one(section, key) != value:
            problems.append(f"ninsho-agent.service: [{section}] {key} must be {value}, is {one(section, key)}")
    if one("Service", "DynamicUser") != "yes" and one("Service", "User") in (None, "root", "0"):
        problems.append("ninsho-agent.service: the agent must run as a dedicated user, not root")
    exec_start = one("Service", "ExecStart") or ""
    for flag in ("--data-dir /var/lib/ninsho-agent", "--log-format json"):
        if flag not in exec_start:
            problems.append(f"ninsho-agent.service: ExecStart lacks {flag}")
    if one("Service", "StateDirectory") != "ninsho-agent":
        problems.append("ninsho-agent.service: StateDirectory must be ninsho-agent (the --data-dir)")
    if shutil.which("systemd-analyze"):
        with tempfile.TemporaryDirectory() as tmp:
            stand_in = Path(tmp) / "card-agent"
            stand_in.write_text("#!/bin/sh\nexit 0\n")
            stand_in.chmod(0o755)
            unit = Path(tmp) / "ninsho-agent.service"
            # The agent runs from its state directory (it updates itself, docs/design.md §3.15).
            unit.write_text(text.replace("/var/lib/ninsho-agent/card-agent --config", f"{stand_in} --config"))
            run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
            said = (run.stdout + run.stderr).strip()
            if run.returncode != 0 or said:
                problems.append(f"ninsho-agent.service: systemd-analyze verify: {said or run.returncode}")
    return problems


# --- the checks, then the broken copies -----------------------------------------------------------


def files() -> dict[str, str]:
    return {
        "compose": (DEPLOY / "compose.yaml").read_text(),
        "compose_toml": (DEPLOY / "compose" / "gateway.toml").read_text(),
        "haproxy": (DEPLOY / "compose" / "haproxy.cfg").read_text(),
        "k8s": (DEPLOY / "k8s" / "gateway.yaml").read_text(),
        "k8s_toml": (DEPLOY / "k8s" / "gateway.toml").read_text(),
        "dockerfile": (DEPLOY / "Dockerfile").read_text(),
        "workspace": (ROOT / "Cargo.toml").read_text(),
        "agent_unit": (DEPLOY / "clinic" / "ninsho-agent.service").read_text(),
    }


def all_checks(f: dict[str, str], haproxy_path: Path) -> list[str]:
    return (
        check_compose(f["compose"], DEPLOY, f["compose_toml"], f["haproxy"])
        + check_haproxy(haproxy_path)
        + check_k8s(f["k8s"], f["k8s_toml"])
        + check_dockerfile(f["dockerfile"], f["workspace"])
        + check_agent_unit(f["agent_unit"])
    )


def k8s_mutation(change):
    """A broken copy of the Kubernetes manifest: `change` edits the parsed documents."""

    def mutate(text: str) -> str:
        docs = [d for d in yaml.safe_load_all(text) if d]
        change({d["kind"]: d for d in docs})
        return yaml.safe_dump_all(docs, sort_keys=False)

    return mutate


def deployment_pod(docs):
    return docs["Deployment"]["spec"]["template"]["spec"]


def broken_copies():
    """(what is broken, which file, how to break it) — each must make the checks fail."""
    sub = lambda old, new: lambda t: t.replace(old, new, 1) if old in t else sys.exit(f"mutation anchor {old!r} is gone")  # noqa: E731
    return [
        ("compose: a service depends on an undefined one", "compose", sub("db: { condition: service_healthy }", "database: { condition: service_healthy }")),
        ("compose: a secret that is not defined", "compose", sub("secrets: [db_password, token_kek", "secrets: [db_pasword, token_kek")),
        ("compose: an unknown service key (schema)", "compose", sub("  restart: unless-stopped\n  # On SIGTERM", "  restart_policy: unless-stopped\n  # On SIGTERM")),
        ("compose: Docker's default grace period", "compose", sub("  stop_grace_period: 45s\n  healthcheck:\n    # The image", "  healthcheck:\n    # The image")),
        ("compose: a secret in the environment", "compose", sub("    GATEWAY_SERVER__PUBLIC_URL:", "    GATEWAY_DATABASE__URL: postgres://ninsho:pw@db/ninsho\n    GATEWAY_SERVER__PUBLIC_URL:")),
        ("compose: an instance published beside the balancer", "compose", sub('ports: ["127.0.0.1:9092:9090"]', 'ports: ["127.0.0.1:9092:9090", "8444:8443"]')),
        ("haproxy: an unknown keyword", "haproxy", sub("balance leastconn", "balance leastconn\n    bogus-keyword on")),
        ("haproxy: a gateway missing from the backend", "haproxy", sub("    server gateway-2 gateway-2:8443\n", "")),
        ("k8s: an unknown field (strict schema)", "k8s", k8s_mutation(lambda d: deployment_pod(d)["containers"][0].update(readinesProbe={}))),
        ("k8s: a wrong type (schema)", "k8s", k8s_mutation(lambda d: d["Deployment"]["spec"].update(replicas="two"))),
        ("k8s: an unknown kind", "k8s", k8s_mutation(lambda d: d["PodDisruptionBudget"].update(kind="PodDisruptionBudgett"))),
        ("k8s: init container without securityContext", "k8s", k8s_mutation(lambda d: deployment_pod(d)["initContainers"][0].pop("securityContext"))),
        ("k8s: no seccomp profile", "k8s", k8s_mutation(lambda d: [deployment_pod(d)["securityContext"].pop("seccompProfile")] + [c["securityContext"].pop("seccompProfile") for c in deployment_pod(d)["containers"]])),
        ("k8s: a hostPath volume", "k8s", k8s_mutation(lambda d: deployment_pod(d)["volumes"].append({"name": "host", "hostPath": {"path": "/"}}))),
        ("k8s: an added capability", "k8s", k8s_mutation(lambda d: deployment_pod(d)["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]))),
        ("k8s: root allowed", "k8s", k8s_mutation(lambda d: deployment_pod(d)["securityContext"].update(runAsNonRoot=False))),
        ("k8s: hostNetwork", "k8s", k8s_mutation(lambda d: deployment_pod(d).update(hostNetwork=True))),
        ("k8s: a secret in the environment", "k8s", k8s_mutation(lambda d: deployment_pod(d)["containers"][0].update(envFrom=[{"secretRef": {"name": "ninsho-gateway"}}]))),
        ("k8s: the ConfigMap drifted from gateway.toml", "k8s", k8s_mutation(lambda d: d["ConfigMap"]["data"].update({"gateway.toml": d["ConfigMap"]["data"]["gateway.toml"] + "\n# drift\n"}))),
        ("k8s: grace period shorter than the drain", "k8s", k8s_mutation(lambda d: deployment_pod(d).update(terminationGracePeriodSeconds=30))),
        ("k8s: ops port open to everyone", "k8s", k8s_mutation(lambda d: d["NetworkPolicy"]["spec"]["ingress"][1].pop("from"))),
        ("Dockerfile: a baked-in GATEWAY_ variable", "dockerfile", sub("ENV GATEWAY_CONFIG=/etc/ninsho/gateway.toml", "ENV GATEWAY_CONFIG=/etc/ninsho/gateway.toml GATEWAY_OPS__LISTEN=0.0.0.0:9090")),
        ("Dockerfile: a member missing from the dependency layer", "dockerfile", sub("COPY trust/Cargo.toml trust/\n", "")),
        ("Dockerfile: a named user", "dockerfile", sub("USER 65532:65532", "USER nonroot")),
        ("agent unit: not restarted", "agent_unit", sub("Restart=always", "Restart=on-failure")),
        ("agent unit: a misspelt key (systemd-analyze)", "agent_unit", sub("RestartSec=2", "RestartSecs=2")),
        ("agent unit: a bad value (systemd-analyze)", "agent_unit", sub("TimeoutStopSec=30", "TimeoutStopSec=thirty")),
        ("agent unit: run as root", "agent_unit", sub("DynamicUser=yes", "User=root")),
        ("agent unit: text logs", "agent_unit", sub(" --log-format json", "")),
    ]


def main() -> int:
    f = files()
    problems = all_checks(f, DEPLOY / "compose" / "haproxy.cfg") + check_stub_workspace() + check_secrets_init()
    gateway, database = os.environ.get("NINSHO_GATEWAY_BIN"), os.environ.get("TEST_DATABASE_URL")
    if gateway and database and not problems:
        import rehearse_compose

        problems += rehearse_compose.rehearse(gateway, database)
        if not problems:
            print("deploy/check.py: compose rehearsal on loopback (init-secrets.sh, two gateways on PostgreSQL, "
                  "haproxy.cfg): both instances serve the public origin, a drained one leaves the balancer")
    else:
        print("deploy/check.py: no compose rehearsal (NINSHO_GATEWAY_BIN and TEST_DATABASE_URL unset; tests/run.sh sets them)")
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        print(f"deploy/check.py: {len(problems)} problem(s)")
        return 1
    print("deploy/check.py: compose.yaml, haproxy.cfg, init-secrets.sh, k8s/gateway.yaml (Kubernetes "
          + " and ".join(K8S_VERSIONS) + ", Pod Security restricted) and the Dockerfile pass")
    # Every broken copy must be refused.
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        for what, key, mutate in broken_copies():
            broken = dict(f)
            broken[key] = mutate(f[key])
            haproxy = Path(tmp) / "haproxy.cfg"
            haproxy.write_text(broken["haproxy"])
            found = all_checks(broken, haproxy)
            if not found:
                missed.append(what)
            else:
                print(f"ok   broken copy refused: {what} ({found[0][:140]})")
    for what in missed:
        print(f"FAIL a broken copy passed the checks: {what}")
    if missed:
        return 1
    print(f"deploy/check.py: all {len(broken_copies())} broken copies refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
