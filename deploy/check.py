#!/usr/bin/python3
"""Checks deploy/ without a cluster, a container runtime or systemd running.

  deploy/check.py --hostd build/default/daemon/hostd

1. yamllint (Debian's yamllint) on every YAML file;
2. every Kubernetes object (the kustomization's resources and generated
   ConfigMap) against the API types of Debian's python3-kubernetes client: an
   unknown field, a value of the wrong type or a missing required field fails;
3. the manifests against hostd: hostd.toml's keys are hostd options, the ports,
   probes, mounts, Secret keys and grace period agree with hostd.toml, names
   refer to objects that exist;
4. systemd-analyze verify on hostd.service with its drop-in.

Exits 0 when all pass, 1 naming each problem, 77 when a tool is missing (the
ctest skip code; scripts/install-deps.sh installs them).
"""
import argparse
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

try:
    import yaml
    from kubernetes import client as k8s
except ImportError as e:
    print(f"SKIP: {e.name} is missing (python3-yaml, python3-kubernetes)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


# --- 1. yamllint -------------------------------------------------------------

YAMLLINT_CONFIG = "{extends: default, rules: {line-length: {max: 100}, document-start: disable}}"


def yaml_files():
    return sorted(os.path.join(HERE, f) for f in os.listdir(HERE) if f.endswith(".yaml"))


def run_yamllint():
    if shutil.which("yamllint") is None:
        print("SKIP: yamllint is missing")
        sys.exit(77)
    r = subprocess.run(["yamllint", "-f", "parsable", "-d", YAMLLINT_CONFIG, *yaml_files()],
                       capture_output=True, text=True)
    for line in r.stdout.splitlines():
        problem("yamllint", line.replace(HERE + "/", ""))


# --- 2. the API types --------------------------------------------------------

def model_class(obj):
    group_version = obj.get("apiVersion", "")
    version = group_version.split("/")[-1]
    name = version[0].upper() + version[1:] + obj.get("kind", "")
    return getattr(k8s, name, None), name


def check_fields(where, value, type_name):
    """Walks `value` against the client's type `type_name` ('V1PodSpec',
    'list[V1Container]', 'dict(str, str)', 'int', 'object' ...)."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return problem(where, f"a list expected, not {value!r}")
        for i, v in enumerate(value):
            check_fields(f"{where}[{i}]", v, type_name[5:-1])
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return problem(where, f"a map expected, not {value!r}")
        inner = type_name[5:-1].split(", ", 1)[1]
        for k, v in value.items():
            check_fields(f"{where}.{k}", v, inner)
        return
    scalar = {"str": str, "int": int, "bool": bool, "float": (int, float)}
    if type_name in scalar:
        ok = isinstance(value, scalar[type_name]) and not (type_name == "int" and isinstance(value, bool))
        if not ok:
            problem(where, f"{type_name} expected, not {value!r}")
        return
    if type_name in ("object", "datetime", "date"):
        return  # int-or-string, quantities, free-form
    cls = getattr(k8s, type_name)
    if not isinstance(value, dict):
        return problem(where, f"a {type_name} expected, not {value!r}")
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, v in value.items():
        if key not in by_json:
            problem(where, f"unknown field \"{key}\" in {type_name}")
        else:
            check_fields(f"{where}.{key}", v, cls.openapi_types[by_json[key]])


class _Response:
    def __init__(self, obj):
        self.data = json.dumps(obj)


def check_api_types(where, obj):
    cls, name = model_class(obj)
    if cls is None:
        return problem(where, f"no API type {name} (apiVersion/kind)")
    check_fields(where, obj, name)
    try:  # the client's own constructors: required fields and enums
        k8s.ApiClient().deserialize(_Response(obj), name)
    except (ValueError, TypeError) as e:
        problem(where, f"not a valid {name}: {e}")


# --- 3. the manifests against hostd -------------------------------------------

def hostd_options(hostd):
    out = subprocess.run([hostd, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"--([a-z][a-z0-9-]*)", out))


def host_port(addr):
    """'tls:0.0.0.0:7443' -> ('0.0.0.0', 7443)."""
    host, _, port = addr.split(":", 1)[1].rpartition(":")
    return host.strip("[]"), int(port)


def check_against_hostd(objects, config, options):
    for key in config:
        if key not in options:
            problem("hostd.toml", f"\"{key}\" is no hostd option (hostd --help)")

    kinds = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    namespaces = {name for kind, name in kinds if kind == "Namespace"}
    for (kind, name), o in kinds.items():
        if kind != "Namespace" and o["metadata"].get("namespace") not in namespaces:
            problem(f"{kind}/{name}", "not in a namespace these manifests create")

    ds = kinds.get(("DaemonSet", "hostd"))
    if ds is None:
        return problem("daemonset.yaml", "no DaemonSet hostd")
    where = "DaemonSet/hostd"
    spec, pod = ds["spec"], ds["spec"]["template"]["spec"]
    labels = ds["spec"]["template"]["metadata"].get("labels", {})
    for k, v in spec["selector"].get("matchLabels", {}).items():
        if labels.get(k) != v:
            problem(where, f"selector {k}={v} does not match the pod template's labels")

    sa = kinds.get(("ServiceAccount", pod.get("serviceAccountName", "default")))
    if sa is None:
        problem(where, f"serviceAccountName {pod.get('serviceAccountName')} is not in these manifests")
    elif sa.get("automountServiceAccountToken") is not False or pod.get("automountServiceAccountToken") is not False:
        problem(where, "hostd calls no Kubernetes API: its pods should mount no token (ServiceAccount and pod)")

    strategy = spec.get("updateStrategy", {})
    (c,) = pod["containers"]
    host_ports = [p for p in c.get("ports", []) if "hostPort" in p]
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and host_ports and \
            strategy.get("rollingUpdate", {}).get("maxSurge", 0) not in (0, "0%"):
        problem(where, "maxSurge needs two pods on a node at once, which the node's ports forbid")

    # Ports: what hostd binds, what the pod declares.
    declared = {p["containerPort"]: p for p in c.get("ports", [])}
    for key in ("grpc", "frontend"):
        if key not in config:
            problem("hostd.toml", f"no {key}: a cluster needs it on TCP")
            continue
        _, port = host_port(config[key])
        if port not in declared:
            problem(where, f"hostd's {key} port {port} (hostd.toml) is not among the container's ports")
    for p in declared.values():
        if pod.get("hostNetwork") and p.get("hostPort", p["containerPort"]) != p["containerPort"]:
            problem(where, f"with hostNetwork, hostPort {p['hostPort']} must equal containerPort")

    # --advertise: the frontend's port, and every $(VAR) defined.
    args = c.get("args", [])
    env = {e["name"] for e in c.get("env", [])}
    for a in args:
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", a):
            if var not in env:
                problem(where, f"argument {a} uses $({var}), which env does not define")
    if "--advertise" in args and "frontend" in config:
        adv_port = int(args[args.index("--advertise") + 1].rsplit(":", 1)[1])
        if adv_port != host_port(config["frontend"])[1]:
            problem(where, f"--advertise port {adv_port} is not the frontend's ({config['frontend']})")

    # Probes: hostd's HTTP endpoint, where hostd.toml puts it.
    http_host, http_port = config["http"].rsplit(":", 1) if "http" in config else (None, None)
    for probe, paths in (("startupProbe", {"/healthz"}), ("livenessProbe", {"/healthz"}),
                         ("readinessProbe", {"/readyz"})):
        get = c.get(probe, {}).get("httpGet")
        if get is None:
            problem(where, f"no {probe} with httpGet (hostd serves /healthz and /readyz)")
            continue
        if http_port is None:
            problem(where, f"{probe} probes HTTP, but hostd.toml sets no http address")
            continue
        if get.get("path") not in paths:
            problem(where, f"{probe} path {get.get('path')} is not one of {sorted(paths)}")
        if str(get.get("port")) != http_port:
            problem(where, f"{probe} port {get.get('port')} is not hostd's http port {http_port}")
        if ipaddress.ip_address(http_host).is_loopback and \
                (not pod.get("hostNetwork") or not ipaddress.ip_address(get.get("host", "0.0.0.0")).is_loopback):
            problem(where, f"{probe}: hostd serves HTTP on loopback only, which the kubelet reaches "
                    "only with hostNetwork and host: 127.0.0.1")

    # Mounts and the files hostd.toml names.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {}
    for m in c.get("volumeMounts", []):
        if m["name"] not in volumes:
            problem(where, f"volumeMount {m['name']} names no volume")
            continue
        mounts[m["mountPath"]] = (m, volumes[m["name"]])
        cm = volumes[m["name"]].get("configMap")
        if cm:
            data = kinds.get(("ConfigMap", cm["name"]), {}).get("data")
            if data is None:
                problem(where, f"volume {m['name']}: ConfigMap {cm['name']} is not in these manifests")
            elif "subPath" in m and m["subPath"] not in data:
                problem(where, f"mount {m['mountPath']}: ConfigMap {cm['name']} has no key {m['subPath']}")

    def mounted(path):
        for mount_path, (m, v) in mounts.items():
            if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
                return m, v
        return None, None

    if "--config" in args:
        path = args[args.index("--config") + 1]
        m, v = mounted(path)
        if v is None or "configMap" not in v:
            problem(where, f"--config {path} is not mounted from the ConfigMap")
    tls_keys = {"tls-cert": "tls.crt", "tls-key": "tls.key", "tls-ca": "ca.crt"}
    for key, secret_key in tls_keys.items():
        if key not in config:
            continue
        m, v = mounted(config[key])
        if v is None or "secret" not in v:
            problem(where, f"{key} {config[key]} (hostd.toml) is not on a mounted Secret")
        elif "subPath" in m:
            problem(where, f"{key}: a Secret mounted with subPath is never updated, so a renewal never arrives")
        elif os.path.basename(config[key]) != secret_key:
            problem(where, f"{key} {config[key]}: a kubernetes.io/tls Secret's key is {secret_key}")
    for path in ("/run/hostd", "/var/lib/hostd"):
        if c.get("securityContext", {}).get("readOnlyRootFilesystem") and mounted(path)[1] is None:
            problem(where, f"hostd writes {path}, which is read-only without a volume there")

    grace = float(config.get("shutdown-grace", 10))
    if pod.get("terminationGracePeriodSeconds", 30) < grace + 5:
        problem(where, f"terminationGracePeriodSeconds leaves hostd less than its shutdown-grace ({grace} s) "
                "and a margin to end its procs")


def load_kustomization():
    with open(os.path.join(HERE, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    objects = []
    for res in kust["resources"]:
        with open(os.path.join(HERE, res)) as f:
            objects += [(res, o) for o in yaml.safe_load_all(f) if o]
    for gen in kust.get("configMapGenerator", []):
        data = {}
        for name in gen["files"]:
            with open(os.path.join(HERE, name)) as f:
                data[name] = f.read()
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": gen["name"], "namespace": gen.get("namespace")}, "data": data}
        objects.append(("kustomization.yaml", cm))
    return objects


# --- 4. systemd --------------------------------------------------------------

def run_systemd_analyze(hostd):
    if shutil.which("systemd-analyze") is None:
        print("note: systemd-analyze is missing; the unit was not verified")
        return
    with tempfile.TemporaryDirectory() as tmp:
        # The unit as installed, but pointing at the built binary (verify checks
        # that ExecStart's program exists).
        def copy(rel):
            dest = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(os.path.join(HERE, rel)) as f:
                text = f.read().replace("/usr/local/bin/hostd", os.path.abspath(hostd))
            with open(dest, "w") as f:
                f.write(text)
        copy("hostd.service")
        for name in os.listdir(os.path.join(HERE, "hostd.service.d")):
            copy(os.path.join("hostd.service.d", name))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", os.path.join(tmp, "hostd.service")],
                           capture_output=True, text=True)
        for line in (r.stdout + r.stderr).splitlines():
            problem("systemd-analyze verify", line.replace(tmp + "/", ""))
        if r.returncode != 0 and not (r.stdout + r.stderr).strip():
            problem("systemd-analyze verify", f"exit {r.returncode}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hostd", required=True, help="the built hostd binary")
    opts = ap.parse_args()

    run_yamllint()
    objects = load_kustomization()
    for source, o in objects:
        check_api_types(f"{source}: {o.get('kind')}/{o.get('metadata', {}).get('name')}", o)
    with open(os.path.join(HERE, "hostd.toml"), "rb") as f:
        config = tomllib.load(f)
    check_against_hostd([o for _, o in objects], config, hostd_options(opts.hostd))
    run_systemd_analyze(opts.hostd)

    for p in problems:
        print(p)
    print(f"deploy/: {len(objects)} objects, hostd.toml, hostd.service: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
