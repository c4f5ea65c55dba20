"""Kubernetes manifests against the KServe CRD schemas: valid, and no field the schema
does not declare (the API server would prune a typo silently)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import reelops

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT.parent / "shared" / "schemas"


def undeclared_fields(document, schema, where="") -> list:
    """Paths of fields in ``document`` that ``schema`` does not declare."""
    found = []
    if isinstance(document, dict) and schema.get("type") == "object":
        properties = schema.get("properties")
        if properties is None or schema.get("x-kubernetes-preserve-unknown-fields"):
            return found
        for key, value in document.items():
            if key not in properties:
                found.append(f"{where}.{key}")
            else:
                found.extend(undeclared_fields(value, properties[key], f"{where}.{key}"))
    elif isinstance(document, list) and "items" in schema:
        for index, item in enumerate(document):
            found.extend(undeclared_fields(item, schema["items"], f"{where}[{index}]"))
    return found


@pytest.fixture
def schema():
    path = SCHEMAS / "kserve-inferenceservice-v1beta1.schema.json"
    if not path.is_file():
        pytest.skip(f"KServe CRD schema not found at {path}")
    return json.loads(path.read_text())


def test_inferenceservice_is_valid_and_declares_every_field(schema):
    document = yaml.safe_load((ROOT / "manifests" / "inferenceservice.yaml").read_text())
    jsonschema.validate(document, schema)
    assert undeclared_fields(document, schema) == []
    container = document["spec"]["predictor"]["containers"][0]
    assert container["image"] == f"ghcr.io/reelops/reelops:{reelops.__version__}"


def test_a_typo_is_caught(schema):
    document = yaml.safe_load((ROOT / "manifests" / "inferenceservice.yaml").read_text())
    document["spec"]["predictor"]["canaryTraficPercent"] = 10
    assert undeclared_fields(document, schema) == [".spec.predictor.canaryTraficPercent"]
