"""The OpenAPI document tells the truth: it is valid OpenAPI, every operation has its own id,
keyed routes declare the bearer scheme, errors are the envelope `{error_code, error_message,
detail?}`, and success bodies have real schemas (or the media types of a file or a stream)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from jsonschema_path import SchemaPath
from openapi_spec_validator import validate
from openapi_spec_validator.shortcuts import get_validator_cls
from starlette.testclient import TestClient

from retouch.api.app import create_app
from retouch.config import Settings
from retouch.services import open_services

Schema = dict[str, Any]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Bodies that are not JSON, and so may go without a schema: output files, event streams.
BINARY_MEDIA = ("image/", "application/octet-stream")
STREAM_MEDIA = "text/event-stream"
ENVELOPE_FIELDS = {"error_code", "error_message", "detail"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    settings = Settings.model_validate({"data_dir": tmp_path_factory.mktemp("openapi") / "data"})
    services = open_services(settings)
    try:
        yield create_app(settings, services)
    finally:
        services.close()


@pytest.fixture(scope="module")
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


@pytest.fixture(scope="module")
def document(app: FastAPI) -> Schema:
    return app.openapi()


def operations(document: Schema) -> Iterator[tuple[str, str, Schema]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def resolve(document: Schema, schema: Schema) -> Schema:
    """Follows local $refs (`#/components/...`)."""
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema = target
    return schema


def variants(document: Schema, schema: Schema) -> list[Schema]:
    """The alternatives of a schema (anyOf/oneOf), resolved, without the null one."""
    schema = resolve(document, schema)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options is None:
        return [schema]
    return [resolve(document, o) for o in options if o.get("type") != "null"]


def is_untyped(document: Schema, schema: Schema | None) -> bool:
    """`{}` (any value), or an object with no declared fields (`dict[str, Any]`)."""
    if schema is None:
        return True
    resolved = resolve(document, schema)
    meaningful = set(resolved) - {"title", "description", "examples", "example"}
    if not meaningful:
        return True
    if "anyOf" in resolved or "oneOf" in resolved or "allOf" in resolved:
        parts = resolved.get("anyOf") or resolved.get("oneOf") or resolved["allOf"]
        return all(is_untyped(document, part) for part in parts if part.get("type") != "null")
    return resolved.get("type") == "object" and not resolved.get("properties")


def envelope_problems(document: Schema, schema: Schema | None, status: str) -> list[str]:
    if schema is None:
        return ["no schema"]
    envelope = resolve(document, schema)
    properties = envelope.get("properties", {})
    problems = []
    if not {"error_code", "error_message"} <= set(envelope.get("required", [])):
        problems.append(f"required is {envelope.get('required')}, not error_code+error_message")
    if set(properties) - ENVELOPE_FIELDS:
        problems.append(f"fields {sorted(properties)} are not {sorted(ENVELOPE_FIELDS)}")
    code = resolve(document, properties.get("error_code", {}))
    message = resolve(document, properties.get("error_message", {}))
    if code.get("type") != "integer":
        problems.append(f"error_code is {code or 'missing'}, not an integer")
    if message.get("type") != "string":
        problems.append(f"error_message is {message or 'missing'}, not a string")
    if status == "422":
        problems += validation_detail_problems(document, properties.get("detail"))
    return problems


def validation_detail_problems(document: Schema, detail: Schema | None) -> list[str]:
    """A 422's detail lists the invalid inputs: [{field, path, message}]."""
    if detail is None:
        return ["422 has no detail"]
    arrays = [v for v in variants(document, detail) if v.get("type") == "array"]
    if not arrays:
        return [f"422 detail is {detail}, not an array"]
    item = resolve(document, arrays[0].get("items", {}))
    fields = set(item.get("properties", {}))
    if not {"field", "path", "message"} <= fields:
        return [f"422 detail items have fields {sorted(fields)}, not field/path/message"]
    return []


def bearer_schemes(document: Schema) -> set[str]:
    schemes = document.get("components", {}).get("securitySchemes", {})
    return {
        name
        for name, scheme in schemes.items()
        if scheme.get("type") == "http" and str(scheme.get("scheme", "")).lower() == "bearer"
    }


def declares_bearer(document: Schema, operation: Schema, schemes: set[str]) -> bool:
    requirements = operation["security"] if "security" in operation else document.get("security")
    return any(set(requirement) & schemes for requirement in requirements or [])


def example_url(path: str) -> str:
    """The path with every parameter filled in ("x"), for a request that only probes auth."""
    parts = [("x" if part.startswith("{") else part) for part in path.split("/")]
    return "/".join(parts)


def test_the_document_is_valid_openapi(client: TestClient, document: Schema) -> None:
    served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == document
    validator = get_validator_cls(document)(SchemaPath.from_dict(document))
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors()]
    assert not errors, "\n".join(errors)
    validate(served.json())


def test_every_operation_has_its_own_id(document: Schema) -> None:
    seen: dict[str, list[str]] = {}
    missing = []
    for path, method, operation in operations(document):
        if "operationId" not in operation:
            missing.append(f"{method.upper()} {path}")
        else:
            seen.setdefault(operation["operationId"], []).append(f"{method.upper()} {path}")
    duplicated = {name: where for name, where in seen.items() if len(where) > 1}
    assert not missing, f"operations without an operationId: {missing}"
    assert not duplicated, f"operationIds used more than once: {duplicated}"


def test_routes_that_need_a_key_declare_the_bearer_scheme(
    client: TestClient, document: Schema
) -> None:
    schemes = bearer_schemes(document)
    wrong = [] if schemes else ["components.securitySchemes has no HTTP bearer scheme"]
    for path, method, operation in operations(document):
        # What the route answers without a key decides whether it needs one.
        needs_key = client.request(method.upper(), example_url(path)).status_code == 401
        declared = declares_bearer(document, operation, schemes)
        if needs_key != declared:
            wrong.append(
                f"{method.upper()} {path}: answers {'401' if needs_key else 'without a key'} "
                f"but {'declares' if declared else 'does not declare'} bearer security"
            )
        if needs_key and "401" not in operation.get("responses", {}):
            wrong.append(f"{method.upper()} {path}: needs a key but declares no 401 response")
    assert not wrong, "\n".join(wrong)


def test_every_error_response_is_the_envelope(document: Schema) -> None:
    wrong = []
    for path, method, operation in operations(document):
        for status, response in operation.get("responses", {}).items():
            if not status.startswith(("4", "5")):
                continue
            response = resolve(document, response)
            content = response.get("content", {})
            if "application/json" not in content:
                wrong.append(f"{method.upper()} {path} {status}: no application/json body")
                continue
            schema = content["application/json"].get("schema")
            for problem in envelope_problems(document, schema, status):
                wrong.append(f"{method.upper()} {path} {status}: {problem}")
    assert not wrong, "\n".join(wrong)


def test_success_responses_have_real_schemas(document: Schema) -> None:
    wrong = []
    for path, method, operation in operations(document):
        for status, response in operation.get("responses", {}).items():
            if not status.startswith("2") or status == "204":
                continue
            where = f"{method.upper()} {path} {status}"
            content = resolve(document, response).get("content")
            if not content:
                if method != "head":
                    wrong.append(f"{where}: declares no body")
                continue
            for media_type, media in content.items():
                if media_type.startswith(BINARY_MEDIA) or media_type == STREAM_MEDIA:
                    continue
                if media_type == "application/json" or media_type.endswith("+json"):
                    if is_untyped(document, media.get("schema")):
                        wrong.append(f"{where}: {media_type} schema is untyped: {media}")
                else:
                    wrong.append(f"{where}: unexpected media type {media_type}")
    assert not wrong, "\n".join(wrong)


def test_files_and_streams_declare_their_media_types(document: Schema) -> None:
    files = [
        (path, method, op)
        for path, method, op in operations(document)
        if path.startswith("/v1/files/") and method == "get"
    ]
    streams = [
        (path, method, op) for path, method, op in operations(document) if path.endswith("/stream")
    ]
    assert files and streams
    for path, _, operation in files:
        types = set(operation["responses"]["200"].get("content", {}))
        assert types and all(t.startswith("image/") for t in types), (path, types)
        assert {"image/png", "image/jpeg", "image/webp"} <= types, (path, types)
    for path, _, operation in streams:
        types = set(operation["responses"]["200"].get("content", {}))
        assert types == {STREAM_MEDIA}, (path, types)


def test_polls_declare_the_parameters_they_read_themselves(document: Schema) -> None:
    """get_status and get_result take only the request (see api.requests.JOB_READ_OPENAPI)."""
    for path in ("/v1/requests/{request_id}/status", "/v1/requests/{request_id}/result"):
        declared = document["paths"][path]["get"]["parameters"]
        by_name = {(parameter["in"], parameter["name"]): parameter for parameter in declared}
        assert set(by_name) == {("path", "request_id"), ("query", "logs")}, path
        assert by_name["path", "request_id"]["required"] is True
        logs = by_name["query", "logs"]
        assert logs["required"] is False
        assert logs["schema"]["type"] == "boolean" and logs["schema"]["default"] is False
