"""Opening a data dir: the job store, the keys, the output folder and the URL signer, shared
by the API, the worker and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from retouch.auth.keys import KeyStore
from retouch.config import Settings
from retouch.jobs.open_store import open_store
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

    def close(self) -> None:
        self.store.close()


def open_services(settings: Settings) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(
        settings.store_url,
        max_attempts=settings.max_attempts,
        webhook_retry_seconds=settings.webhook_retry_seconds,
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
