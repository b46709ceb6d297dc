from __future__ import annotations

import time

from retouch.storage.signing import UrlSigner


def test_signatures_expire_and_bind_the_name() -> None:
    signer = UrlSigner(b"s" * 32)
    expires, signature = signer.sign("a/b.png", 60)
    assert signer.verify("a/b.png", expires, signature)
    assert not signer.verify("a/c.png", expires, signature)
    assert not signer.verify("a/b.png", expires + 1, signature)
    past, old = signer.sign("a/b.png", -1)
    assert past < time.time() and not signer.verify("a/b.png", past, old)
