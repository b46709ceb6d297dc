"""Opening a data dir: the job store, the keys, the output folder and the URL signer, shared
by the API, the worker and the CLI."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from retouch.auth.keys import KeyRecord, KeyStore
from retouch.config import Settings
from retouch.jobs.database import PostgresPool
from retouch.jobs.open_store import open_store
from retouch.jobs.outage import OutageLog, until_answered
from retouch.jobs.store import JobStore
from retouch.storage.base import Storage
from retouch.storage.open_storage import open_storage
from retouch.storage.signing import UrlSigner
from retouch.storage.signing_secret import load_signing_secret


@dataclass
class Services:
    settings: Settings
    store: JobStore
    keys: KeyStore
    storage: Storage
    signer: UrlSigner

    def revoke_key(self, id_or_name: str) -> list[KeyRecord]:
        """Revoke the key with this id (or every active key with this name) and, in the same
        transaction, end its work: queued jobs cancelled (running ones too with
        cancel_running), pending webhooks given up. See KeyStore.revoke."""
        started: list[str] = []

        def end_work(conn: Any, key_ids: list[str]) -> None:
            running_too = self.settings.cancel_running
            started.extend(self.store.end_work_of_revoked(conn, key_ids, running_too=running_too))

        revoked = self.keys.revoke(id_or_name, with_their_work=end_work)
        # After the commit: a cancelled job's earlier attempts may have stored files.
        for job_id in started:
            try:
                self.storage.delete_request(job_id)
            except Exception:  # the key is revoked all the same; retention removes them later
                log.exception("could not remove the files of cancelled request %s", job_id)
        return revoked

    def close(self) -> None:
        self.store.close()


log = logging.getLogger(__name__)


def open_services(settings: Settings) -> Services:
    """The data dir's services. A job database that does not answer yet (restarting, or
    started after us) is waited for, up to settings.database_start_wait_seconds, as running
    processes wait out an outage; past that, its error is raised."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + settings.database_start_wait_seconds
    return until_answered(
        lambda: _open_services(settings),
        OutageLog(log, "starting"),
        give_up=lambda: time.monotonic() >= deadline,
    )


def _open_services(settings: Settings) -> Services:
    store = open_store(
        settings.store_url,
        max_attempts=settings.max_attempts,
        webhook_retry_seconds=settings.webhook_retry_seconds,
        default_max_running=settings.key_max_running or None,
        pool=PostgresPool(settings.database_pool_size, settings.database_pool_overflow),
    )
    try:
        secret = load_signing_secret(
            store.engine, data_dir=settings.data_dir, configured=settings.signing_secret
        )
        storage = open_storage(settings)
    except BaseException:
        store.close()  # a bad secret or storage URL must not leave the store's pool open
        raise
    return Services(
        settings=settings,
        store=store,
        keys=KeyStore(store.engine),
        storage=storage,
        signer=UrlSigner(secret),
    )
