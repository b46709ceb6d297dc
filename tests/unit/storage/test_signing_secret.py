"""The URL-signing secret, one per deployment: kept in the database, made once, adopted from
an older data dir's signing.key, or given by RETOUCH_SIGNING_SECRET. On both backends."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from retouch.cli import app
from retouch.config import Settings
from retouch.jobs.database import migrate, open_engine
from retouch.jobs.schema import service_secrets
from retouch.services import Services, open_services
from retouch.storage.signing import UrlSigner
from retouch.storage.signing_secret import SIGNING_SECRET_VARIABLE, SigningSecretError

from ..jobs.test_job_store import run_at_once

NAME = "0b5f3e9a-1c2d-4e5f-8a9b-0c1d2e3f4a5b/0-abcdef12.png"


@pytest.fixture(autouse=True)
def no_configured_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIGNING_SECRET_VARIABLE, raising=False)


@pytest.fixture
def opened() -> Iterator[list[Services]]:
    """Services the test opened, closed at its end."""
    services: list[Services] = []
    yield services
    for each in services:
        each.close()


def open_at(opened: list[Services], database_url: str, data_dir: Path) -> Services:
    settings = Settings.model_validate({"data_dir": data_dir, "database_url": database_url})
    services = open_services(settings)
    opened.append(services)
    return services


def verifies(signer: UrlSigner, other: UrlSigner) -> bool:
    """Whether a URL `signer` signs passes `other`'s check."""
    expires, signature = signer.sign(NAME, 60)
    return other.verify(NAME, expires, signature)


def test_services_on_one_database_verify_each_others_urls(
    database_url: str, tmp_path: Path, opened: list[Services]
) -> None:
    first = open_at(opened, database_url, tmp_path / "host-a")
    second = open_at(opened, database_url, tmp_path / "host-b")
    assert verifies(first.signer, second.signer) and verifies(second.signer, first.signer)
    assert not (tmp_path / "host-a" / "signing.key").exists()
    reopened = open_at(opened, database_url, tmp_path / "host-a")
    assert verifies(first.signer, reopened.signer)


def test_first_opens_at_once_agree_on_one_secret(
    database_url: str, tmp_path: Path, opened: list[Services]
) -> None:
    # Migrated first (a SQLite file is new here): the race under test is the secret's alone.
    engine = open_engine(database_url)
    migrate(engine)
    engine.dispose()
    outcomes = run_at_once(6, lambda index: open_at(opened, database_url, tmp_path / f"{index}"))
    assert [outcome for outcome in outcomes if not isinstance(outcome, Services)] == []
    assert all(verifies(opened[0].signer, each.signer) for each in opened)
    with opened[0].keys.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(service_secrets)).scalar() == 1


def test_an_existing_signing_key_is_adopted(
    database_url: str, tmp_path: Path, opened: list[Services], caplog: pytest.LogCaptureFixture
) -> None:
    """The upgrade: URLs signed with the data dir's signing.key stay valid, on every host."""
    kept = secrets.token_hex(32)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "signing.key").write_text(kept + "\n")
    before_upgrade = UrlSigner(bytes.fromhex(kept))
    upgraded = open_at(opened, database_url, tmp_path / "old")
    new_host = open_at(opened, database_url, tmp_path / "new")
    assert verifies(before_upgrade, upgraded.signer) and verifies(before_upgrade, new_host.signer)
    # A second host's own old file does not replace the adopted secret; it is reported.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "signing.key").write_text(secrets.token_hex(32))
    with caplog.at_level(logging.WARNING):
        other = open_at(opened, database_url, tmp_path / "other")
    assert verifies(before_upgrade, other.signer)
    assert "signing.key is not the deployment's signing secret" in caplog.text


def test_a_broken_signing_key_is_refused_while_none_is_stored(
    database_url: str, tmp_path: Path, opened: list[Services]
) -> None:
    tmp_path.mkdir(exist_ok=True)
    for text in ("", "abcd", "not hex at all", "ab" * 31):
        (tmp_path / "signing.key").write_text(text)
        with pytest.raises(SigningSecretError, match=r"signing\.key must be a signing secret"):
            open_at(opened, database_url, tmp_path)


def test_the_configured_secret_wins(
    database_url: str, tmp_path: Path, opened: list[Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = open_at(opened, database_url, tmp_path / "a")
    configured = secrets.token_hex(32)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "signing.key").write_text(secrets.token_hex(32))
    monkeypatch.setenv(SIGNING_SECRET_VARIABLE, configured.upper())
    given = open_at(opened, database_url, tmp_path / "b")
    assert verifies(UrlSigner(bytes.fromhex(configured)), given.signer)
    assert not verifies(stored.signer, given.signer)


@pytest.mark.parametrize("value", ["abcd", "z" * 64, "ab" * 31, "  "])
def test_a_malformed_configured_secret_is_refused_naming_the_variable(
    database_url: str,
    tmp_path: Path,
    opened: list[Services],
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    monkeypatch.setenv(SIGNING_SECRET_VARIABLE, value)
    with pytest.raises(SigningSecretError, match=f"^{SIGNING_SECRET_VARIABLE} must be") as refused:
        open_at(opened, database_url, tmp_path)
    assert "64 hex characters" in str(refused.value)
    listed = CliRunner().invoke(
        app, ["keys", "list", "--database-url", database_url, "--data-dir", str(tmp_path)]
    )
    assert listed.exit_code == 2
    assert SIGNING_SECRET_VARIABLE in listed.output
