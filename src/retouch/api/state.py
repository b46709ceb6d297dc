"""Everything a request handler needs, built once per API process."""

from __future__ import annotations

from dataclasses import dataclass

from retouch.api.changes import ChangeFeed
from retouch.auth.keys import KeyStore
from retouch.config import Settings
from retouch.jobs.rate_limits import SubmitRates
from retouch.jobs.store import JobStore
from retouch.responses import ResponseBuilder
from retouch.served_endpoints import Endpoint
from retouch.storage.base import Storage
from retouch.storage.signing import UrlSigner


@dataclass
class AppState:
    settings: Settings
    store: JobStore
    keys: KeyStore
    storage: Storage
    signer: UrlSigner
    responses: ResponseBuilder
    endpoints: dict[str, Endpoint]
    changes: ChangeFeed
    rates: SubmitRates
