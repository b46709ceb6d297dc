"""Where the client finds the server URL and the API key: the arguments (CLI flags), then the
environment (`RETOUCH_URL`, `RETOUCH_API_KEY`), then a TOML file (`url`, `api_key`) at
`$RETOUCH_CLIENT_CONFIG`, or `$XDG_CONFIG_HOME/retouch/client.toml`, or
`~/.config/retouch/client.toml`. The URL defaults to http://127.0.0.1:8000; the key has no
default."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from retouch.client.errors import ConfigurationError, InvalidApiKeyError, MissingApiKeyError

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "RETOUCH_URL"
KEY_ENV = "RETOUCH_API_KEY"
CONFIG_ENV = "RETOUCH_CLIENT_CONFIG"
_FILE_KEYS = frozenset({"url", "api_key"})
# A key travels in the Authorization header: visible ASCII only.
_API_KEY = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class ClientConfig:
    url: str
    api_key: str


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The config file's path (it need not exist)."""
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else None
    return (base or Path.home() / ".config") / "retouch" / "client.toml"


def read_config_file(path: Path) -> dict[str, str]:
    """The file's `url` and `api_key` ({} when it does not exist)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(None, None, f"cannot read config file {path}: {error}") from None
    # Unknown keys are refused so that a typo (`apikey`) does not silently fall back.
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise ConfigurationError(
            None,
            None,
            f"config file {path}: unknown key(s) {', '.join(unknown)}; "
            "it may hold only `url` and `api_key`",
        )
    for name, value in data.items():
        if not isinstance(value, str):
            raise ConfigurationError(None, None, f"config file {path}: `{name}` must be a string")
    return dict(data)


def resolve_config(
    url: str | None = None, api_key: str | None = None, *, env: Mapping[str, str] | None = None
) -> ClientConfig:
    """Each value from the first place that has it: argument, environment, config file."""
    env = os.environ if env is None else env
    path = config_path(env)
    key_source = "--api-key (api_key=)" if api_key else KEY_ENV
    url = url or env.get(URL_ENV) or None
    api_key = api_key or env.get(KEY_ENV) or None
    if url is None or api_key is None:
        from_file = read_config_file(path)
        url = url or from_file.get("url") or DEFAULT_URL
        if api_key is None:
            api_key, key_source = from_file.get("api_key"), str(path)
    if not api_key:
        raise MissingApiKeyError(
            None,
            None,
            "no API key: pass --api-key (or api_key=...), set RETOUCH_API_KEY, or put "
            f'api_key = "rtk_..." in {path}',
        )
    api_key = api_key.strip()
    if not _API_KEY.fullmatch(api_key):
        # Not shown: it is a secret.
        raise InvalidApiKeyError(
            None,
            None,
            f"the API key from {key_source} has a space, a control or a non-ASCII character; "
            "a key is visible ASCII (rtk_...): copy it again",
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            None, None, f"server URL {url!r} must start with http:// or https:// and name a host"
        )
    return ClientConfig(url.rstrip("/"), api_key)
