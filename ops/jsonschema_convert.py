"""Kubernetes OpenAPI documents and CRDs turned into the strict JSON schemas kubeconform reads.

kubeconform (``-schema-location``) loads one JSON schema per kind from a path template. Its
public schema sets are downloaded from the internet, which this project cannot reach, so the
same kind of schema is built here from sources the Go module proxy serves:

- the built-in kinds from ``api/openapi-spec/swagger.json`` of the ``k8s.io/kubernetes``
  module (OpenAPI v2: ``definitions`` with ``x-kubernetes-group-version-kind``);
- custom resources from CustomResourceDefinition YAML (their ``openAPIV3Schema``).

Every schema is *strict*: an object that lists its properties rejects any other property, so a
misspelt field in a template (``readinessprobe``, ``secretKeyref``) fails validation instead of
being silently dropped by the API server. Each file is self-contained: the definitions it
refers to travel in its own ``definitions`` section (kubeconform compiles schemas as draft 4).

Everything here is plain functions over dictionaries; ``ops/build_schemas.py`` does the I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

# kubeconform's -schema-location template matching schema_path() below. For apiVersion
# "apps/v1" kubeconform's .Group is "apps" and .ResourceAPIVersion "v1"; for the core group
# ("v1") both are "v1".
KUBECONFORM_TEMPLATE = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"

REF_PREFIX = "#/definitions/"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

# resource.Quantity's grammar (k8s.io/apimachinery/pkg/api/resource): a signed decimal with a
# binary-SI, decimal-SI or exponent suffix. YAML may also carry it as a bare number.
QUANTITY_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$"

# The OpenAPI document types both of these as plain strings, yet the API server accepts
# numbers for them (`port: 8000`, `cpu: 2`); what the server accepts is what a schema must say.
REPLACED_DEFINITIONS: dict[str, dict[str, Any]] = {
    INT_OR_STRING: {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    QUANTITY: {"oneOf": [{"type": "string", "pattern": QUANTITY_PATTERN}, {"type": "number"}]},
}

# Keywords that hold one subschema, a list of subschemas, or a map of name -> subschema.
_ONE = ("items", "additionalProperties", "not")
_LIST = ("allOf", "anyOf", "oneOf")
_MAP = ("properties", "patternProperties", "definitions")
# Annotations that only make the files larger.
_DROPPED = ("description", "example", "externalDocs")


def schema_path(api_version: str, kind: str) -> str:
    """The relative file kubeconform opens for (apiVersion, kind) under KUBECONFORM_TEMPLATE."""
    parts = api_version.split("/")
    return f"{parts[0]}/{kind.lower()}_{parts[-1]}.json"


def tighten(node: Any) -> Any:
    """A strict copy of one OpenAPI schema node.

    - an object schema that lists ``properties`` and says nothing of others gets
      ``additionalProperties: false`` (unless ``x-kubernetes-preserve-unknown-fields``);
    - ``x-kubernetes-int-or-string`` becomes "an integer or a string";
    - ``nullable: true`` (OpenAPI v3) adds ``null`` to the type;
    - descriptions are dropped.
    """
    if isinstance(node, list):
        return [tighten(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string"):
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key in _ONE and isinstance(value, (dict, list)):
            out[key] = tighten(value)
        elif key in _LIST and isinstance(value, list):
            out[key] = [tighten(item) for item in value]
        elif key in _MAP and isinstance(value, dict):
            out[key] = {name: tighten(sub) for name, sub in value.items()}
        else:
            out[key] = copy.deepcopy(value)
    if "$ref" in out:
        # Draft 4 ignores every sibling of $ref; keep the node a pure reference.
        return {"$ref": out["$ref"]}
    if out.pop("nullable", False) and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"] if "null" not in types else types
    open_ended = out.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in out and "additionalProperties" not in out and not open_ended:
        out["additionalProperties"] = False
    return out


def refs_in(node: Any) -> Iterator[str]:
    """Names of the definitions a schema node refers to (``#/definitions/NAME``)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            yield ref[len(REF_PREFIX):]
        for value in node.values():
            yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


def ref_closure(definitions: dict[str, Any], roots: Iterable[str]) -> list[str]:
    """Every definition reachable from ``roots`` through $ref, roots included, sorted."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        if name not in definitions:
            raise KeyError(f"the OpenAPI document refers to #/definitions/{name}, which it does not define")
        seen.add(name)
        pending.extend(refs_in(definitions[name]))
    return sorted(seen)


def _definitions_section(definitions: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {
        name: copy.deepcopy(REPLACED_DEFINITIONS[name]) if name in REPLACED_DEFINITIONS else tighten(definitions[name])
        for name in names
    }


def group_version_kinds(definition: dict[str, Any]) -> list[tuple[str, str]]:
    """(apiVersion, kind) pairs a swagger definition is the schema of."""
    pairs = []
    for gvk in definition.get("x-kubernetes-group-version-kind", []):
        group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
        pairs.append((f"{group}/{version}" if group else version, kind))
    return pairs


def kubernetes_schemas(swagger: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One strict, self-contained schema per (apiVersion, kind) of a swagger.json document,
    keyed by schema_path()."""
    definitions = swagger.get("definitions")
    if not isinstance(definitions, dict) or not definitions:
        raise ValueError("not an OpenAPI v2 document: it has no 'definitions' object")
    schemas: dict[str, dict[str, Any]] = {}
    for definition in definitions.values():
        pairs = group_version_kinds(definition)
        if not pairs:
            continue
        root = tighten(definition)
        # The closure holds the kind's own definition too when it contains itself
        # (CustomResourceDefinition's JSONSchemaProps does): refs stay resolvable.
        root["definitions"] = _definitions_section(definitions, ref_closure(definitions, refs_in(definition)))
        for api_version, kind in pairs:
            schemas[schema_path(api_version, kind)] = root
    if not schemas:
        raise ValueError("the OpenAPI document has no definition with x-kubernetes-group-version-kind")
    return schemas


def crd_schemas(crd: dict[str, Any], swagger_definitions: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Strict schemas of every served version of one CustomResourceDefinition.

    CRDs declare ``metadata`` as a bare object; with the Kubernetes definitions at hand it is
    replaced by the real ObjectMeta schema, so labels and annotations are checked too.
    """
    if crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"expected a CustomResourceDefinition, got kind {crd.get('kind')!r}")
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    schemas: dict[str, dict[str, Any]] = {}
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        source = (version.get("schema") or {}).get("openAPIV3Schema")
        if source is None:
            raise ValueError(f"{kind} {group}/{version['name']} has no openAPIV3Schema to validate against")
        root = tighten(source)
        if swagger_definitions is not None and "metadata" in root.get("properties", {}):
            root["properties"]["metadata"] = {"$ref": REF_PREFIX + OBJECT_META}
            root["definitions"] = _definitions_section(
                swagger_definitions, ref_closure(swagger_definitions, [OBJECT_META])
            )
        schemas[schema_path(f"{group}/{version['name']}", kind)] = root
    if not schemas:
        raise ValueError(f"CustomResourceDefinition {spec['names'].get('plural', kind)}.{group} serves no version")
    return schemas
