"""The process-wide urllib3 PoolManager and its settings: created lazily, rebuilt after ``dispose()``,
forgotten after fork.

Settings come from ``HTTP_POOL_*`` environment variables. They are read once, when the pool manager is
first needed (and again after :func:`db_utils.http.dispose`), so a bad value fails the first ``urlopen``
call with a :class:`~db_utils.config.ConfigError` naming the variable, before any request is sent.

A forked child must never write to a socket it inherited: the parent may be in the middle of a request on
it, and two processes interleaving bytes on one TCP stream corrupt both. ``os.register_at_fork`` drops the
child's reference to the parent's manager without closing anything (closing could shut down the parent's
TLS session); the child builds its own manager on its first request.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3

from db_utils import stats
from db_utils.config import env_bool, env_int
from db_utils.http.wire import POOL_CLASSES, counters


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


class _ManagerState:
    """Holds the manager and its settings. The lock only guards creation and disposal, never a request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.manager: urllib3.PoolManager | None = None
        self.settings: HttpPoolSettings | None = None
        # Default TLS contexts keyed by the factory that made them (see default_tls_context).
        self.default_contexts: dict[Callable[[], ssl.SSLContext], ssl.SSLContext] = {}


_state = _ManagerState()


def current_settings() -> HttpPoolSettings:
    """The settings in force; read from the environment on first use and after ``dispose()``."""
    settings = _state.settings
    if settings is None:
        with _state.lock:
            settings = _state.settings
            created = settings is None
            if settings is None:
                settings = _state.settings = HttpPoolSettings.from_env()
        if created:  # both paths (direct and urllib3) read the settings first: the pools exist from here on
            figures = {"size": settings.maxsize, "num_pools": settings.num_pools, "block": settings.block}
            stats.notify(stats.PoolEvent("created", "http", stats.HTTP_POOL_NAME, figures))
    return settings


def pool_manager() -> urllib3.PoolManager:
    """The shared manager (double-checked creation: the common path takes no lock)."""
    manager = _state.manager
    if manager is None:
        settings = current_settings()
        with _state.lock:
            if _state.manager is None:
                _state.manager = _build_manager(settings)
            manager = _state.manager
    return manager


def _build_manager(settings: HttpPoolSettings) -> urllib3.PoolManager:
    manager = urllib3.PoolManager(
        num_pools=settings.num_pools,
        maxsize=settings.maxsize,
        block=settings.block,
        retries=False,  # retries and redirects are decided by db_utils.http, never by urllib3
    )
    manager.pool_classes_by_scheme = POOL_CLASSES
    return manager


def default_tls_context() -> ssl.SSLContext:
    """The context urllib would use for an https URL when the caller passes none.

    http.client builds one per connection from ``ssl._create_default_https_context``; building one per
    request would defeat pooling (pools are keyed by context), so one is kept per factory function. Keying
    by the factory keeps the legacy idiom
    ``ssl._create_default_https_context = ssl._create_unverified_context`` working even when it runs after
    the first request.
    """
    factory = ssl._create_default_https_context
    context = _state.default_contexts.get(factory)
    if context is None:
        with _state.lock:
            context = _state.default_contexts.get(factory)
            if context is None:
                context = factory()
                # The two settings http.client.HTTPSConnection adds to the default context it creates.
                context.set_alpn_protocols(["http/1.1"])
                if context.post_handshake_auth is not None:
                    context.post_handshake_auth = True
                _state.default_contexts[factory] = context
    return context


def dispose() -> None:
    """Close every idle pooled connection and forget the settings (re-read from the env on next use)."""
    with _state.lock:
        manager, _state.manager = _state.manager, None
        settings, _state.settings = _state.settings, None
        _state.default_contexts.clear()
    if manager is not None:
        manager.clear()
    if settings is not None:
        stats.notify(stats.PoolEvent("disposed", "http", stats.HTTP_POOL_NAME, {}))


def status() -> dict[str, Any]:
    """Settings and live pool count, merged into the stats snapshot."""
    manager = _state.manager
    settings = _state.settings or HttpPoolSettings()
    return {
        "pools": len(manager.pools) if manager is not None else 0,
        "maxsize": settings.maxsize,
        "block": settings.block,
        "num_pools": settings.num_pools,
        "enabled": settings.enabled,
    }


def _forget_after_fork() -> None:
    global _state  # noqa: PLW0603 - replaced wholesale: the old lock may be held by a thread that no longer exists
    _state = _ManagerState()
    counters.after_fork_in_child()


os.register_at_fork(after_in_child=_forget_after_fork)
