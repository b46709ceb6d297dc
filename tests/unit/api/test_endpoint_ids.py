"""Endpoint ids of any depth: `owner/model/task`, RunComfy's `owner/model/variant/task` and
others route to the submit and schema handlers; an unknown one answers 400001 naming it and
the served ones, whatever its depth. Configured ids are two or more segments, none empty."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
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


# --- the ids each endpoint answers to on the fal and Replicate surfaces -----------------------


def surface_config(root: Path, *endpoints: dict[str, str]) -> Settings:
    """Settings reading an endpoints file of these tables (`id`, and `fal`/`replicate`)."""
    tables = "".join(
        '[[endpoints]]\nengine = "flux2-klein"\n'
        + "".join(f'{name} = "{value}"\n' for name, value in endpoint.items())
        + "\n"
        for endpoint in endpoints
    )
    (root / "endpoints.toml").write_text(tables)
    return Settings.model_validate({"data_dir": root / "data", "config": root / "endpoints.toml"})


def test_the_default_endpoint_answers_to_the_hosted_ids(tmp_path: Path) -> None:
    for settings in (
        Settings.model_validate({"data_dir": tmp_path / "data"}),
        surface_config(tmp_path, {"id": SERVED}),
    ):
        [endpoint] = load_endpoints(settings)
        assert (endpoint.fal_id, endpoint.replicate_id) == (
            "fal-ai/nano-banana-2/edit",
            "google/nano-banana-2",
        )


@pytest.mark.parametrize(
    ("endpoint", "replicate"),
    [
        ("acme/thing", "acme/thing"),
        ("acme/thing/edit", "acme/thing-edit"),
        (DEEP, "acme/thing-turbo-edit"),
        ("a1/b.c/d_e/f-g", "a1/b.c-d_e-f-g"),
    ],
)
def test_other_endpoints_default_to_their_own_id_and_owner_slash_rest(
    tmp_path: Path, endpoint: str, replicate: str
) -> None:
    [served] = load_endpoints(surface_config(tmp_path, {"id": endpoint}))
    assert (served.fal_id, served.replicate_id) == (endpoint, replicate)


def test_the_fal_and_replicate_keys_set_the_ids(tmp_path: Path) -> None:
    settings = surface_config(
        tmp_path,
        {"id": SERVED, "fal": "acme/banana/v2/edit", "replicate": "acme/banana"},
        {"id": DEEP, "fal": "acme/turbo-edit"},
        {"id": "acme/kontext/edit", "replicate": "acme/kontext"},
    )
    ids = {e.id: (e.fal_id, e.replicate_id) for e in load_endpoints(settings)}
    assert ids == {
        SERVED: ("acme/banana/v2/edit", "acme/banana"),
        DEEP: ("acme/turbo-edit", "acme/thing-turbo-edit"),
        "acme/kontext/edit": ("acme/kontext/edit", "acme/kontext"),
    }


@pytest.mark.parametrize(
    "replicate",
    ["acme/thing/edit", "acme", "acme/", "/thing", "Acme/thing", "acme//thing", "a b/c"],
)
def test_a_replicate_id_is_exactly_owner_slash_name(tmp_path: Path, replicate: str) -> None:
    settings = surface_config(tmp_path, {"id": DEEP, "replicate": replicate})
    with pytest.raises(ConfigError, match=r"endpoints\.0\.replicate"):
        load_endpoints(settings)


@pytest.mark.parametrize("fal", ["acme", "acme//edit", "Acme/edit", "acme/edit/"])
def test_a_fal_id_has_the_shape_of_an_endpoint_id(tmp_path: Path, fal: str) -> None:
    settings = surface_config(tmp_path, {"id": DEEP, "fal": fal})
    with pytest.raises(ConfigError, match=r"endpoints\.0\.fal"):
        load_endpoints(settings)


def test_two_endpoints_with_one_replicate_id_are_refused_naming_it(tmp_path: Path) -> None:
    settings = surface_config(
        tmp_path,
        {"id": SERVED, "replicate": "acme/banana"},
        {"id": DEEP, "replicate": "acme/banana"},
    )
    with pytest.raises(ConfigError, match=r"^replicate id 'acme/banana' names two endpoints"):
        load_endpoints(settings)


def test_two_endpoints_whose_default_replicate_ids_meet_are_refused(tmp_path: Path) -> None:
    """`acme/thing/edit` and `acme/thing-edit` both default to `acme/thing-edit`."""
    settings = surface_config(tmp_path, {"id": "acme/thing/edit"}, {"id": "acme/thing-edit"})
    with pytest.raises(ConfigError, match=r"replicate id 'acme/thing-edit' names two endpoints"):
        load_endpoints(settings)
    # Setting one of them apart is the fix the message names.
    settings = surface_config(
        tmp_path, {"id": "acme/thing/edit", "replicate": "acme/thing"}, {"id": "acme/thing-edit"}
    )
    assert [e.replicate_id for e in load_endpoints(settings)] == ["acme/thing", "acme/thing-edit"]


def test_two_endpoints_with_one_fal_id_are_refused_naming_it(tmp_path: Path) -> None:
    settings = surface_config(
        tmp_path, {"id": SERVED}, {"id": DEEP, "fal": "fal-ai/nano-banana-2/edit"}
    )
    with pytest.raises(
        ConfigError, match=r"fal id 'fal-ai/nano-banana-2/edit' names two endpoints"
    ):
        load_endpoints(settings)


# Kontext's fal id is another endpoint's own id: fal's ids are looked up first.
KONTEXT = {"id": "acme/kontext/edit", "fal": "acme/kontext-edit", "replicate": "acme/kontext"}
OTHER = {"id": "acme/other/edit", "fal": "acme/kontext/edit"}


@pytest.fixture(scope="module")
def surfaces(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str, httpx.Client]]:
    """A server (no worker) of two endpoints with their own fal and Replicate ids: its base,
    a key, and an httpx client."""
    root = tmp_path_factory.mktemp("surface-ids")
    settings = surface_config(root, KONTEXT, OTHER)
    with in_process_server(root / "data", worker=False, config=settings.config) as server:
        yield server.base, server.key, server.http()


def test_configured_ids_route_on_fal_and_replicate(
    surfaces: tuple[str, str, httpx.Client],
) -> None:
    base, key, http = surfaces
    fal_body = {"prompt": "x", "image_urls": BODY["image_urls"]}
    fal = {"Authorization": f"Key {key}"}
    replicate = {"Authorization": f"Bearer {key}"}

    def endpoint_of(request_id: str) -> str:
        result = http.get(f"{base}/v1/requests/{request_id}/status", headers=replicate)
        assert result.status_code == 200, result.text
        listed = http.get(f"{base}/v1/requests", headers=replicate).json()["requests"]
        return str(next(r["endpoint"] for r in listed if r["request_id"] == request_id))

    kontext = http.post(f"{base}/fal/acme/kontext-edit", json=fal_body, headers=fal)
    assert kontext.status_code == 200, kontext.text
    assert kontext.json()["status_url"].startswith(f"{base}/fal/acme/kontext-edit/requests/")
    # An app id that is one endpoint's fal id and another's own id is the first's.
    other = http.post(f"{base}/fal/acme/kontext/edit", json=fal_body, headers=fal)
    assert other.status_code == 200, other.text
    assert other.json()["status_url"].startswith(f"{base}/fal/acme/kontext/requests/")
    own = http.post(f"{base}/fal/acme/other/edit", json=fal_body, headers=fal)
    assert own.status_code == 200, own.text
    assert endpoint_of(kontext.json()["request_id"]) == "acme/kontext/edit"
    assert endpoint_of(other.json()["request_id"]) == "acme/other/edit"
    assert endpoint_of(own.json()["request_id"]) == "acme/other/edit"
    unknown = http.post(f"{base}/fal/fal-ai/nano-banana-2/edit", json=fal_body, headers=fal)
    assert unknown.status_code == 404
    assert unknown.json()["detail"].endswith(
        "this server serves: acme/kontext-edit, acme/kontext/edit"
    )
    input_ = {"prompt": "x", "image_input": BODY["image_urls"]}
    for model, endpoint in (
        ("acme/kontext", "acme/kontext/edit"),
        ("acme/other-edit", "acme/other/edit"),
    ):
        created = http.post(
            f"{base}/replicate/v1/models/{model}/predictions",
            json={"input": input_},
            headers=replicate,
        )
        assert created.status_code == 201, created.text
        assert created.json()["model"] == model
        assert endpoint_of(created.json()["id"]) == endpoint
    missing = http.post(
        f"{base}/replicate/v1/models/google/nano-banana-2/predictions",
        json={"input": input_},
        headers=replicate,
    )
    assert missing.status_code == 404
    assert missing.json()["detail"].endswith("this server serves: acme/kontext, acme/other-edit")


def test_each_served_model_has_its_own_version(surfaces: tuple[str, str, httpx.Client]) -> None:
    base, key, http = surfaces
    bearer = {"Authorization": f"Bearer {key}"}
    input_ = {"prompt": "x", "image_input": BODY["image_urls"]}
    versions = {}
    for model in ("acme/kontext", "acme/other-edit"):
        created = http.post(
            f"{base}/replicate/v1/models/{model}/predictions",
            json={"input": input_},
            headers=bearer,
        )
        assert created.status_code == 201, created.text
        versions[model] = created.json()["version"]
    assert versions["acme/kontext"] != versions["acme/other-edit"]
    other = http.post(
        f"{base}/replicate/v1/predictions",
        json={"version": versions["acme/other-edit"], "input": input_},
        headers=bearer,
    )
    assert other.status_code == 201 and other.json()["model"] == "acme/other-edit"
