"""The optional bearer token of the monitoring endpoints (``POOLSHIFT_MONITOR_TOKEN``).

The token is read once, when an app is created, so a typo fails at startup rather than on the first
scrape, and requests never touch the environment. Only its SHA-256 digest is kept: the presented token is
hashed too and the digests compared with :func:`hmac.compare_digest`, so the comparison takes the same
time whatever the token's length or its first wrong character. Neither token is ever logged, echoed in a
response or shown in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from db_utils import ConfigError

TOKEN_VARIABLE = "POOLSHIFT_MONITOR_TOKEN"  # noqa: S105 - the variable's name, not a secret

# RFC 6750's b64token: what a bearer token may contain, so it travels unaltered in the header.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_REALM = 'Bearer realm="poolshift"'


class BearerToken:
    """A configured token; :meth:`accepts` checks an ``Authorization`` header against it."""

    def __init__(self, token: str) -> None:
        self._digest = hashlib.sha256(token.encode("ascii")).digest()

    def __repr__(self) -> str:
        return "BearerToken(***)"

    def accepts(self, authorization: str | None) -> bool:
        """True for ``Bearer <the token>`` (scheme in any case, as RFC 7235 says)."""
        scheme, _, presented = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        presented_digest = hashlib.sha256(presented.strip().encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(presented_digest, self._digest)


def resolve_token(token: str | None) -> BearerToken | None:
    """``token`` if given, else ``POOLSHIFT_MONITOR_TOKEN``; blank means no authentication."""
    source = "token" if token is not None else TOKEN_VARIABLE
    raw = (os.environ.get(TOKEN_VARIABLE, "") if token is None else token).strip()
    if not raw:
        return None
    if not _B64TOKEN.fullmatch(raw):
        # The value is a secret: say what is wrong with it, never what it is.
        raise ConfigError(
            f"{source} is not a valid bearer token: use letters, digits and - . _ ~ + / (optionally "
            "ending in =), e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )
    return BearerToken(raw)


def challenge(authorization: str | None) -> str:
    """The ``WWW-Authenticate`` value for a refused request (RFC 6750 section 3)."""
    return _REALM if not authorization else f'{_REALM}, error="invalid_token"'
