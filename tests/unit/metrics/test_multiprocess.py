"""`serve`'s switch to prometheus_client's multiprocess mode, made after prometheus_client was
imported: values made from then on are written to the folder, which a scrape sums; the last
run's files are removed and nothing else in the folder is."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest, values

from retouch.metrics import multiprocess
from retouch.metrics.collectors import DatabaseGauges

from .metrics_support import Scrape


def test_enable_switches_new_values_to_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(multiprocess.MULTIPROC_VARIABLE, raising=False)
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored afterwards
    folder = multiprocess.metrics_dir(tmp_path)
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"the last run's")
    (folder / "notes.txt").write_text("not ours")

    assert multiprocess.enable(tmp_path) == folder
    monkeypatch.setenv(multiprocess.MULTIPROC_VARIABLE, str(folder))  # so it is unset after
    assert not (folder / "counter_999999.db").exists()
    assert (folder / "notes.txt").exists()
    assert multiprocess.multiprocess()

    counter = Counter("retouch_test_events", "test", ["kind"], registry=CollectorRegistry())
    counter.labels(kind="a").inc(3)
    assert list(folder.glob("counter_*.db")), "the value is not in the folder"
    scraped = Scrape.parse(
        generate_latest(multiprocess.exposition_registry(DatabaseGauges(None))).decode()
    )
    assert scraped.value("retouch_test_events_total", kind="a") == 3
    assert scraped.value("retouch_scrape_database_up") == 0
