"""Offline checks of the Kubernetes manifests the exporter writes (no cluster, no network).

`check_manifests(docs)` returns human-readable violations, empty when every document is valid:

- LeaderWorkerSet (leaderworkerset.x-k8s.io/v1): the CRD's own openAPIV3Schema (tests/data/lws, LWS
  v0.10.0), with objects closed (`additionalProperties: false`) the way a strict field validation
  (kubectl's default `--validate=strict`) refuses unknown fields, plus the rules the LWS validating
  webhook adds (name is a DNS-1035 label, size >= 1, 0 <= replicas <= 1000000).
- every kind: metadata.name present and DNS-valid; label keys/values (metadata.labels, nodeSelector,
  matchLabels) well formed, as the API server checks them.
- built-in kinds (Deployment, Service, ConfigMap, ...): `kubernetes-validate` strict schemas for
  Kubernetes K8S_VERSION (pip install kubernetes-validate==1.37.0; an optional test dependency).
- anything else is a violation (unknown kind or apiVersion).

Not checked: what only the API server or a controller decides (defaults, CEL rules of built-in
types, field immutability, quota, admission), and whether images, nodes or GPU labels exist.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import jsonschema
import yaml

K8S_VERSION = "1.35"  # the oldest minor the Kubernetes project still supports when this was written
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LWS_CRD = Path(__file__).resolve().parents[1] / "data" / "lws" / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # Service and LeaderWorkerSet names
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_KINDS = {"Service", "LeaderWorkerSet"}
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # and at most 63 characters
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def _close(node):
    """Adapt a structural CRD schema to jsonschema: strict objects, int-or-string as a type union."""
    if isinstance(node, list):
        return [_close(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: _close(sub) for name, sub in value.items()}
        else:
            out[key] = _close(value)
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["type"] = ["integer", "string"]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=1)
def _lws_validator() -> jsonschema.Draft7Validator:
    crd = yaml.load(LWS_CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 0.2 s vs 1.6 s
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _close(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return jsonschema.Draft7Validator(schema)


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<root>"


def _check_lws(doc: dict) -> list[str]:
    errors = sorted(_lws_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    found = [f"{_where(e)}: {e.message}" for e in errors]
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    template = spec.get("leaderWorkerTemplate")
    size, replicas = template.get("size", 1) if isinstance(template, dict) else 1, spec.get("replicas", 1)
    if isinstance(size, int) and size < 1:  # webhook: "size must be equal or greater than 1"
        found.append(f"spec.leaderWorkerTemplate.size: {size} is less than 1 (LWS webhook)")
    if isinstance(replicas, int) and not 0 <= replicas <= 1_000_000:
        found.append(f"spec.replicas: {replicas} is outside [0, 1000000] (LWS webhook)")
    return found


def _check_builtin(doc: dict) -> list[str]:
    try:
        import kubernetes_validate
    except ImportError as exc:  # a missing tool is not a manifest violation: fail loudly
        raise ImportError("check_manifests needs kubernetes-validate for built-in kinds: "
                          "pip install kubernetes-validate==1.37.0") from exc
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        kind, api_version = doc.get("kind"), doc.get("apiVersion")
        return [f"unknown kind {kind!r} for apiVersion {api_version!r} in Kubernetes {K8S_VERSION}"]
    except kubernetes_validate.ValidationError as e:
        return [f"{_where(e)}: {e.message}"]  # kubernetes-validate reports the first error only
    return []


def _check_metadata(doc: dict) -> list[str]:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        return ["metadata.name: missing (the exporter never relies on generateName)"]
    pattern = _DNS1035 if doc.get("kind") in _DNS1035_KINDS else _DNS1123_SUBDOMAIN
    limit = 63 if doc.get("kind") in _DNS1035_KINDS else 253
    if len(name) > limit or not pattern.match(name):
        rule = "DNS-1035 label" if pattern is _DNS1035 else "DNS-1123 subdomain"
        return [f"metadata.name: {name!r} is not a {rule} of at most {limit} characters"]
    return []


def _check_labels(node, path: str = "") -> list[str]:
    """Label keys/values in every metadata.labels, nodeSelector and matchLabels (API-server rules)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if key in ("labels", "nodeSelector", "matchLabels") and isinstance(value, dict):
                for k, v in value.items():
                    if not isinstance(k, str) or not _LABEL_KEY.match(k) or len(k.split("/")[-1]) > 63:
                        found.append(f"{here}: {k!r} is not a valid label key")
                    if isinstance(v, str) and (len(v) > 63 or not _LABEL_VALUE.match(v)):
                        found.append(f"{here}.{k}: {v!r} is not a valid label value")
            else:
                found += _check_labels(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _check_labels(item, f"{path}.{i}")
    return found


def check_manifests(docs: list[dict]) -> list[str]:
    """All violations in `docs`, each prefixed with `<index> <Kind>/<name>`; [] when all are valid."""
    violations: list[str] = []
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            violations.append(f"[{index}]: document is a {type(doc).__name__}, not a mapping")
            continue
        kind, api_version, metadata = doc.get("kind"), doc.get("apiVersion"), doc.get("metadata")
        label = f"[{index}] {kind}/{metadata.get('name') if isinstance(metadata, dict) else None}"
        if not isinstance(kind, str) or not isinstance(api_version, str):
            violations.append(f"{label}: apiVersion and kind must both be strings")
            continue
        if kind == "LeaderWorkerSet" and api_version != LWS_API_VERSION:
            found = [f"apiVersion: {api_version!r}, expected {LWS_API_VERSION!r}"]
        elif kind == "LeaderWorkerSet":
            found = _check_lws(doc)
        else:  # kubernetes-validate's schemas pin apiVersion and kind with enums
            found = _check_builtin(doc)
        found += _check_metadata(doc) + _check_labels(doc)
        violations.extend(f"{label}: {v}" for v in found)
    return violations
