"""Endpoint ids of any depth: `owner/model/task`, RunComfy's `owner/model/variant/task` and
others route to the submit and schema handlers; an unknown one answers 400001 naming it and
the served ones, whatever its depth. Configured ids are two or more segments, none empty."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_support import Api
from retouch.config import Settings
from retouch.served_endpoints import ConfigError, load_endpoints

from ..inprocess import SQUARE_PNG, in_process_server

SERVED = "google/nano-banana-2/edit"
DEEP = "acme/thing/turbo/edit"
BODY: dict[str, Any] = {"prompt": "x", "image_urls": [f"data:image/png;base64,{SQUARE_PNG}"]}


def assert_unknown(response: Any, endpoint: str, served: tuple[str, ...] = (SERVED,)) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_code"] == 400001
    assert repr(endpoint) in body["error_message"]
    assert body["error_message"].endswith("this server serves: " + ", ".join(served))


@pytest.mark.parametrize(
    "endpoint",
    ["acme", "acme/thing", "acme/thing/edit", DEEP, "a/b/c/d/e", f"{SERVED}/more", "Acme/Thing"],
)
def test_an_unknown_id_of_any_depth_is_400001(api: Api, endpoint: str) -> None:
    assert_unknown(api.submit(BODY, endpoint=endpoint), endpoint)


@pytest.mark.parametrize("endpoint", ["acme/thing", "acme/thing/edit", DEEP, "a/b/c/d/e"])
def test_the_schema_of_an_unknown_id_of_any_depth_is_400001(api: Api, endpoint: str) -> None:
    response = api.http.get(f"{api.base}/v1/models/{endpoint}/schema", headers=api.headers)
    assert_unknown(response, endpoint)


@pytest.mark.parametrize("endpoint", [SERVED, DEEP])
def test_a_submit_to_a_schema_url_is_a_wrong_method(api: Api, endpoint: str) -> None:
    """Not a submit to an id ending in `schema` (none is served): 405, as the OpenAPI says."""
    response = api.submit(BODY, endpoint=f"{endpoint}/schema")
    assert response.status_code == 405 and response.json()["error_code"] == 405001


def test_a_three_part_id_ending_in_schema_is_unknown(api: Api) -> None:
    """The documented submit route takes any three parts: `acme/thing/schema` is an id there,
    and never a served one."""
    assert_unknown(api.submit(BODY, endpoint="acme/thing/schema"), "acme/thing/schema")


def test_the_served_id_still_submits_and_the_list_still_answers(api: Api) -> None:
    request_id = api.submit_ok(BODY)
    assert api.cancel(request_id).status_code == 202
    # A percent-encoded slash is a slash: the id is the same.
    encoded = api.submit(BODY, endpoint=SERVED.replace("/", "%2F"))
    assert encoded.status_code == 200, encoded.text
    assert api.cancel(encoded.json()["request_id"]).status_code == 202
    for url in ("/v1/models", "/v1/models/"):  # the second redirects to the first
        listed = api.http.get(f"{api.base}{url}", headers=api.headers)
        assert listed.status_code == 200 and listed.json()["models"][0]["id"] == SERVED


def test_malformed_paths_are_no_endpoint_id(api: Api) -> None:
    # Empty segments: no id has them, so no route.
    missing = api.http.post(f"{api.base}/v1/models/acme//edit", json=BODY, headers=api.headers)
    assert missing.status_code == 404 and missing.json()["error_code"] == 404002
    # Only POST submits, at any depth.
    wrong = api.http.get(f"{api.base}/v1/models/{DEEP}", headers=api.headers)
    assert wrong.status_code == 405 and wrong.json()["error_code"] == 405001
    # Without a key: 401 before the id is looked at.
    anonymous = api.http.post(f"{api.base}/v1/models/{DEEP}", json=BODY)
    assert anonymous.status_code == 401


def write_config(path: Path, *ids: str) -> Path:
    path.write_text(
        "".join(f'[[endpoints]]\nid = "{id_}"\nengine = "flux2-klein"\n\n' for id_ in ids)
    )
    return path


def configured(root: Path, *ids: str) -> Settings:
    config = write_config(root / "endpoints.toml", *ids)
    return Settings.model_validate({"data_dir": root / "data", "config": config})


@pytest.fixture(scope="module")
def deep_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A server (no worker: jobs stay queued) serving a four-part id beside the default."""
    root = tmp_path_factory.mktemp("deep-ids")
    config = write_config(root / "endpoints.toml", SERVED, DEEP)
    with in_process_server(root / "data", worker=False, config=config) as server:
        yield server.api()


def test_a_served_four_part_id_submits_and_has_its_schema(deep_api: Api) -> None:
    submitted = deep_api.submit(BODY, endpoint=DEEP)
    assert submitted.status_code == 200, submitted.text
    request_id = submitted.json()["request_id"]
    assert deep_api.status(request_id).json()["status"] == "in_queue"
    assert deep_api.cancel(request_id).json()["outcome"] == "cancelled"
    models = deep_api.http.get(f"{deep_api.base}/v1/models", headers=deep_api.headers).json()
    urls = {model["id"]: model["schema_url"] for model in models["models"]}
    assert urls[DEEP] == f"{deep_api.base}/v1/models/{DEEP}/schema"
    schema = deep_api.http.get(urls[DEEP], headers=deep_api.headers)
    assert schema.status_code == 200 and schema.json()["required"] == ["prompt", "image_urls"]
    # Its prefix and its extensions are other ids, which it does not serve.
    for other in ("acme/thing/turbo", f"{DEEP}/more"):
        assert_unknown(deep_api.submit(BODY, endpoint=other), other, (SERVED, DEEP))


@pytest.mark.parametrize(
    "endpoint", ["acme/thing", "acme/thing/edit", DEEP, "a/b/c/d/e", "a1/b.c/d_e/f-g"]
)
def test_configured_ids_have_two_or_more_segments(tmp_path: Path, endpoint: str) -> None:
    settings = configured(tmp_path, endpoint)
    assert [e.id for e in load_endpoints(settings)] == [endpoint]


@pytest.mark.parametrize(
    "endpoint",
    [
        *("acme", "", "acme//edit", "/acme/edit", "acme/edit/", "Acme/edit", "acme/../edit"),
        *("a/b c", "acme/thing/schema", "acme/thing/turbo/schema"),
    ],
)
def test_configured_ids_refuse_other_shapes(tmp_path: Path, endpoint: str) -> None:
    settings = configured(tmp_path, endpoint)
    with pytest.raises(ConfigError, match=r"endpoints\.0\.id"):
        load_endpoints(settings)
