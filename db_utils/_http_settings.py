"""Settings of the pooled HTTP transport, read from ``HTTP_POOL_*`` environment variables.

They are read once, when the pool manager is first needed (and again after :func:`db_utils.http.dispose`),
so a bad value fails the first ``urlopen`` call with a :class:`~db_utils.config.ConfigError` naming the
variable, before any request is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from db_utils.config import env_bool, env_int


@dataclass(frozen=True)
class HttpPoolSettings:
    """Sizing of the urllib3 pools behind :func:`db_utils.http.urlopen`.

    ``maxsize`` is per (scheme, host, port, TLS context). It defaults to 32, not urllib3's 10, because a
    legacy service typically calls one backend from a thread pool of up to 32 workers
    (``ThreadPoolExecutor``'s default ceiling): with 10, every burst above 10 threads would open extra
    connections, close them on return and log "Connection pool is full" for each. ``block`` stays false:
    urllib never waits for a connection, and a caller that never closes a response must not be able to
    stall every other thread.
    """

    maxsize: int = 32
    block: bool = False
    num_pools: int = 16
    enabled: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HttpPoolSettings:
        """Read ``HTTP_POOL_MAXSIZE``, ``HTTP_POOL_BLOCK``, ``HTTP_POOL_NUM_POOLS``, ``HTTP_POOL_ENABLED``."""
        return cls(
            maxsize=env_int("HTTP_POOL_MAXSIZE", cls.maxsize, minimum=1, environ=environ),
            block=env_bool("HTTP_POOL_BLOCK", cls.block, environ=environ),
            num_pools=env_int("HTTP_POOL_NUM_POOLS", cls.num_pools, minimum=1, environ=environ),
            enabled=env_bool("HTTP_POOL_ENABLED", cls.enabled, environ=environ),
        )
