#!/usr/bin/env bash
# Validates deploy/kubernetes/ offline, with no cluster and no kubectl:
#   1. every manifest against the Kubernetes JSON schemas of the `kubernetes-validate` PyPI
#      package (pinned), in strict mode (an unknown or misspelt field is an error), for each
#      Kubernetes version in KUBERNETES_VERSIONS; a kind it has no schema for is an error too,
#      except the two files that are not Kubernetes API objects (Kustomization) or need a
#      CRD (ServiceMonitor), which are checked against a small schema of their own below;
#   2. YAML that PyYAML would read silently wrong (a duplicate key keeps only its last
#      value) is an error;
#   3. kustomization.yaml lists files that exist, and every other manifest is either listed
#      or one of the two deliberately left out (see the file);
#   4. the configuration inside the ConfigMap passes `healthgate --check`.
# Needs python3; installs the validator into a virtualenv under ~/.cache (kept between runs),
# with apt-get for python3-venv when run as root on a Debian machine that lacks it.
# HEALTHGATE=path/to/healthgate overrides the binary (default target/debug/healthgate, which
# .ci/run has just built; built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=deploy/kubernetes
# 1.27: the oldest release with everything these files use on by default (the PDB's
# unhealthyPodEvictionPolicy); 1.30: a common production release; 1.37: the newest the
# pinned package knows, so a removed API shows up here first.
KUBERNETES_VERSIONS="1.27.0 1.30.0 1.37.0"
# The validator and every package it pulls in, pinned: the same schemas and the same
# verdicts on every machine.
REQUIREMENTS="kubernetes-validate==1.37.0
attrs==26.1.0
importlib_resources==7.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
packaging==26.4
PyYAML==6.0.4
referencing==0.37.0
rpds-py==2026.9.1
typing_extensions==4.16.0"

# Same approach as scripts/check-deploy.sh: install with apt-get only as root.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
  else
    return 1
  fi
}

command -v python3 >/dev/null 2>&1 || apt_install python3 || true
if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 is needed to validate the Kubernetes manifests (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
fi

# One virtualenv per set of pins; the stamp is written last, so a half-finished install is
# redone rather than trusted.
pins=$(printf '%s' "$REQUIREMENTS" | sha256sum | cut -c1-12)
# (target/ when there is no HOME: a fresh clone then installs again, which still works.)
venv="${XDG_CACHE_HOME:-${HOME:-$PWD/target}/.cache}/healthgate/kubernetes-validate-$pins"
if [ ! -f "$venv/.complete" ]; then
  echo "installing kubernetes-validate into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  # Debian's python3 has no venv module (ensurepip) without the python3-venv package.
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt_install python3-venv || true
    if ! python3 -m venv "$venv"; then
      rm -rf "$venv"
      echo "error: cannot create a Python virtualenv (Debian: apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
  printf '%s\n' "$REQUIREMENTS" > "$venv/requirements.txt"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$venv/requirements.txt"
  touch "$venv/.complete"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
config="$tmp/healthgate.yaml"

echo "== kubernetes-validate (strict) against Kubernetes $KUBERNETES_VERSIONS: $DIR"
# The validator's own command line only warns, exit 0, about a kind it has no schema for;
# this driver makes that an error and adds the checks listed at the top.
# shellcheck disable=SC2086 # one argument per version
"$venv/bin/python" - "$DIR" "$config" $KUBERNETES_VERSIONS <<'PY'
import os, sys
import jsonschema, yaml
import kubernetes_validate as kv

directory, config_out, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
errors = []

class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

# Not Kubernetes API objects, or needing a CRD the package has no schema for: checked
# against the fields these files may use (not the Prometheus Operator's full CRD).
def strict(properties, required=()):
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}
STRING, STRINGS = {"type": "string"}, {"type": "array", "items": {"type": "string"}}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = strict({"name": STRING, "namespace": STRING, "labels": LABELS,
                   "annotations": LABELS}, ["name"])
OWN_SCHEMAS = {
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): strict({
        "apiVersion": STRING, "kind": STRING, "namespace": STRING, "resources": STRINGS,
        "images": {"type": "array", "items": strict(
            {"name": STRING, "newName": STRING, "newTag": STRING, "digest": STRING},
            ["name"])},
    }, ["apiVersion", "kind", "resources"]),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): strict({
        "apiVersion": STRING, "kind": STRING, "metadata": METADATA,
        "spec": strict({
            "selector": strict({"matchLabels": LABELS}, ["matchLabels"]),
            "namespaceSelector": {"type": "object"},
            "endpoints": {"type": "array", "minItems": 1, "items": strict({
                "port": STRING, "path": STRING, "scheme": {"enum": ["http", "https"]},
                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
            }, ["port"])},
        }, ["selector", "endpoints"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
}
# Left out of kustomization.yaml on purpose (the file says why).
NOT_LISTED = {"mi-headless-service.yaml", "servicemonitor.yaml"}

files = sorted(f for f in os.listdir(directory) if f.endswith((".yaml", ".yml")))
if not files:
    errors.append(f"{directory}: no manifest found")
documents = {}
for name in files:
    path = os.path.join(directory, name)
    try:
        with open(path) as f:
            docs = [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]
    except yaml.YAMLError as e:
        errors.append(f"{path}: {e}")
        continue
    if not docs:
        errors.append(f"{path}: no document")
    documents[name] = docs
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            errors.append(f"{path}: a document without apiVersion and kind")
            continue
        what = f"{path}: {doc['kind']}/{(doc.get('metadata') or {}).get('name', '?')}"
        own = OWN_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if own is not None:
            problems = sorted(jsonschema.Draft202012Validator(own).iter_errors(doc), key=str)
            for e in problems:
                errors.append(f"{what}: {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}")
            if not problems:
                print(f"ok   {what} (this script's schema of {doc['kind']})")
            continue
        for version in versions:
            try:
                kv.validate(doc, version, strict=True)
                print(f"ok   {what} (Kubernetes {version})")
            except kv.ValidationError as e:
                errors.append(f"{what} (Kubernetes {version}): "
                              f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}")
            except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as e:
                errors.append(f"{what} (Kubernetes {version}): {e.message}")

# kustomization.yaml: what it lists exists; what it does not list is left out on purpose.
kustomization = documents.get("kustomization.yaml")
if not kustomization:
    errors.append(f"{directory}/kustomization.yaml: missing")
else:
    listed = set(kustomization[0].get("resources") or [])
    for resource in sorted(listed):
        if resource not in files:
            errors.append(f"{directory}/kustomization.yaml lists {resource}, which does not exist")
    for name in files:
        if name != "kustomization.yaml" and name not in listed and name not in NOT_LISTED:
            errors.append(f"{directory}/{name} is not in kustomization.yaml's resources "
                          "(add it, or list it as left out on purpose in this script and there)")

# The configuration inside the ConfigMap, for `healthgate --check`.
configs = [d["data"]["healthgate.yaml"] for docs in documents.values() for d in docs
           if isinstance(d, dict) and d.get("kind") == "ConfigMap"
           and "healthgate.yaml" in (d.get("data") or {})]
if len(configs) != 1:
    errors.append(f"{directory}: expected one ConfigMap with data.healthgate.yaml, found {len(configs)}")
else:
    with open(config_out, "w") as f:
        f.write(configs[0])

for e in errors:
    print(f"error: {e}", file=sys.stderr)
if errors:
    print(f"error: {len(errors)} problem(s) in {directory}", file=sys.stderr)
    sys.exit(1)
PY

echo "== healthgate --check on the ConfigMap's configuration"
healthgate=${HEALTHGATE:-target/debug/healthgate}
if [ ! -x "$healthgate" ]; then
  echo "$healthgate not built yet: cargo build --locked --bin healthgate"
  cargo build --locked --bin healthgate
fi
# Line numbers in an error count from the first line of data."healthgate.yaml".
echo "$DIR/configmap.yaml, data.\"healthgate.yaml\" (extracted to $config):"
"$healthgate" --config "$config" --check
