"""The converter that turns Kubernetes OpenAPI and CRDs into strict kubeconform schemas."""

from __future__ import annotations

import pytest

from ops.jsonschema_convert import (
    INT_OR_STRING,
    OBJECT_META,
    QUANTITY,
    QUANTITY_PATTERN,
    crd_schemas,
    kubernetes_schemas,
    ref_closure,
    schema_path,
    tighten,
)


def test_schema_path_follows_kubeconform_group_and_version():
    # kubeconform: .Group is the part before "/" (the version itself for the core group).
    assert schema_path("v1", "Service") == "v1/service_v1.json"
    assert schema_path("apps/v1", "Deployment") == "apps/deployment_v1.json"
    assert schema_path("keda.sh/v1alpha1", "ScaledObject") == "keda.sh/scaledobject_v1alpha1.json"


def test_tighten_closes_objects_and_keeps_open_ones_open():
    node = {
        "type": "object",
        "description": "dropped",
        "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"b": {"type": "integer"}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    out = tighten(node)
    assert out["additionalProperties"] is False
    assert "description" not in out
    assert out["properties"]["spec"]["additionalProperties"] is False
    assert "additionalProperties" not in out["properties"]["free"]
    assert out["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in node  # the input is not modified


def test_tighten_int_or_string_nullable_and_ref_siblings():
    node = {
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "note": {"type": "string", "nullable": True},
            "meta": {"$ref": "#/definitions/x", "description": "ignored by draft 4 anyway"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
        },
    }
    props = tighten(node)["properties"]
    assert props["port"] == {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    assert props["note"]["type"] == ["string", "null"]
    assert props["meta"] == {"$ref": "#/definitions/x"}
    assert props["items"]["items"]["additionalProperties"] is False


def test_ref_closure_follows_references_and_names_a_missing_one():
    definitions = {
        "a": {"properties": {"b": {"$ref": "#/definitions/b"}}},
        "b": {"properties": {"self": {"$ref": "#/definitions/b"}, "c": {"items": {"$ref": "#/definitions/c"}}}},
        "c": {"type": "string"},
        "unused": {"type": "string"},
    }
    assert ref_closure(definitions, ["a"]) == ["a", "b", "c"]
    with pytest.raises(KeyError, match="nowhere"):
        ref_closure({"a": {"$ref": "#/definitions/nowhere"}}, ["a"])


def _swagger() -> dict:
    return {
        "definitions": {
            "io.k8s.api.apps.v1.Deployment": {
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "metadata": {"$ref": f"#/definitions/{OBJECT_META}"},
                    "spec": {"type": "object", "properties": {"port": {"$ref": f"#/definitions/{INT_OR_STRING}"},
                                                              "cpu": {"$ref": f"#/definitions/{QUANTITY}"}}},
                },
            },
            "io.k8s.api.core.v1.Tree": {
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Tree", "version": "v1"}],
                "properties": {"children": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Tree"}}},
            },
            OBJECT_META: {"type": "object", "properties": {"name": {"type": "string"},
                                                            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            INT_OR_STRING: {"type": "string", "format": "int-or-string"},
            QUANTITY: {"type": "string"},
            "io.k8s.api.core.v1.Unreferenced": {"type": "object"},
        }
    }


def test_kubernetes_schemas_are_self_contained_and_strict():
    schemas = kubernetes_schemas(_swagger())
    assert set(schemas) == {"apps/deployment_v1.json", "v1/tree_v1.json"}
    deployment = schemas["apps/deployment_v1.json"]
    assert deployment["additionalProperties"] is False
    assert set(deployment["definitions"]) == {OBJECT_META, INT_OR_STRING, QUANTITY}
    # What the API server accepts: `port: 8000` and `cpu: 2` as well as strings.
    assert {"type": "integer"} in deployment["definitions"][INT_OR_STRING]["oneOf"]
    quantity = deployment["definitions"][QUANTITY]["oneOf"]
    assert {"type": "number"} in quantity and quantity[0]["pattern"] == QUANTITY_PATTERN
    # A kind that contains itself carries its own definition, so the $ref resolves.
    tree = schemas["v1/tree_v1.json"]
    assert "io.k8s.api.core.v1.Tree" in tree["definitions"]


@pytest.mark.parametrize(("value", "ok"), [("500m", True), ("1.5Gi", True), ("2", True), ("1e3", True), ("+10Mi", True),
                                           ("10 Gi", False), ("1GB", False), ("", False), ("Mi", False)])
def test_quantity_pattern(value, ok):
    import re

    assert bool(re.match(QUANTITY_PATTERN, value)) is ok


def test_kubernetes_schemas_refuse_a_document_without_kinds():
    with pytest.raises(ValueError, match="definitions"):
        kubernetes_schemas({"openapi": "3.0.0"})
    with pytest.raises(ValueError, match="x-kubernetes-group-version-kind"):
        kubernetes_schemas({"definitions": {"a": {"type": "string"}}})


def _crd(served_v2: bool = True) -> dict:
    schema = {"type": "object", "properties": {"apiVersion": {"type": "string"}, "metadata": {"type": "object"},
                                               "spec": {"type": "object", "properties": {"maxReplicaCount": {"type": "integer"}}}}}
    return {
        "kind": "CustomResourceDefinition",
        "spec": {
            "group": "keda.sh",
            "names": {"kind": "ScaledObject", "plural": "scaledobjects"},
            "versions": [
                {"name": "v1alpha1", "served": True, "schema": {"openAPIV3Schema": schema}},
                {"name": "v2", "served": served_v2, "schema": {"openAPIV3Schema": schema}},
            ],
        },
    }


def test_crd_schemas_use_the_real_object_meta_and_skip_unserved_versions():
    definitions = _swagger()["definitions"]
    schemas = crd_schemas(_crd(served_v2=False), definitions)
    assert list(schemas) == ["keda.sh/scaledobject_v1alpha1.json"]
    root = schemas["keda.sh/scaledobject_v1alpha1.json"]
    assert root["properties"]["metadata"] == {"$ref": f"#/definitions/{OBJECT_META}"}
    assert OBJECT_META in root["definitions"]
    assert root["properties"]["spec"]["additionalProperties"] is False


def test_crd_schemas_refuse_what_is_not_a_crd_or_has_no_schema():
    with pytest.raises(ValueError, match="expected a CustomResourceDefinition"):
        crd_schemas({"kind": "Deployment"})
    crd = _crd()
    del crd["spec"]["versions"][0]["schema"]
    with pytest.raises(ValueError, match="ScaledObject keda.sh/v1alpha1 has no openAPIV3Schema"):
        crd_schemas(crd)
