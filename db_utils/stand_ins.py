"""Whether a driver's function was replaced by a stand-in (a test double), so a drop-in can call it instead.

Before migration, a test that replaces the driver's function (``mock.patch("psycopg2.connect")``,
``mocker.patch("urllib.request.urlopen")``, ``monkeypatch.setattr(sqlite3, "connect", fake)``) intercepts
the legacy call. After it, the call site calls a db_utils drop-in, whose pooled path does not call the
driver's function per call: such a test would reach a real server, or a pool would be filled with mocks.
So each drop-in asks its :class:`DriverFunction`, per call, whether the driver's function is still the
driver's own, and calls a stand-in exactly as the legacy call did (same arguments, unpooled, its result
returned). While nothing is replaced that is one identity comparison.

The driver's own function is recognised by what it is (its code, defined in the driver's module), not
only by identity with what db_utils saw at import: a conftest may already have replaced it then.

A replacement that calls through to the original and says so with ``__wrapped__`` (``functools.wraps``,
wrapt; OpenTelemetry's and ddtrace's driver instrumentation) is not a stand-in: those calls stay pooled.
One that calls through without saying so would lose the pool silently, so the first call a stand-in
takes is logged (once per driver function and process), naming it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("db_utils.pool")

# A __wrapped__ chain longer than this is not a real wrapper stack.
_MAX_WRAPPERS = 32


class DriverFunction:
    """One driver function (``psycopg2.connect``...): tells its own from a stand-in."""

    __slots__ = ("_is_own", "logged", "own")

    def __init__(self, current: Any, is_own: Callable[[Any], bool]) -> None:
        self._is_own = is_own
        self.logged = False  # the first call a stand-in took was logged
        #: The driver's own function once seen (None while only a stand-in has been): the fast path.
        self.own: Any = current if is_own(current) else None

    def is_stand_in(self, current: Any) -> bool:
        """True when ``current`` is neither the driver's own function nor a wrapper that reaches it
        through ``__wrapped__``: a mock, a fake."""
        if current is self.own:
            return False
        candidate = current
        for _ in range(_MAX_WRAPPERS):
            if self._is_own(candidate):
                if candidate is current:
                    self.own = current  # db_utils was imported under a stand-in, now gone
                return False
            try:
                candidate = candidate.__wrapped__
            except AttributeError:  # a mock has none: dunder names are never made up by mocks
                return True
        return True


def defined_in(source: str, name: str) -> Callable[[Any], bool]:
    """A test for the Python function ``name`` defined in ``source`` (a path ending, such as
    ``urllib/request.py``): its code object says where it was defined, which no mock or fake imitates
    (``create_autospec`` builds its function elsewhere). A path ending, not the whole path, so a moved
    virtualenv or a sourceless install still matches."""
    suffix = "/" + source

    def is_own(candidate: Any) -> bool:
        code = getattr(candidate, "__code__", None)
        return (
            code is not None and code.co_name == name and code.co_filename.replace("\\", "/").endswith(suffix)
        )

    return is_own


def drop_in(
    pooled: F,
    module: ModuleType,
    name: str,
    driver: DriverFunction,
    on_stand_in: Callable[[], object] | None = None,
) -> F:
    """The public drop-in for ``module.name``: ``pooled`` with the same signature, except that while
    ``module.name`` holds a stand-in the call goes to it, with the arguments exactly as the caller wrote
    them (which is why the drop-in takes ``*args, **kwargs``), after ``on_stand_in`` (a counter)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        current = getattr(module, name)
        if current is not driver.own and driver.is_stand_in(current):
            if on_stand_in is not None:
                on_stand_in()
            if not driver.logged:
                driver.logged = True
                logger.warning(
                    "%s.%s is replaced by %r, which does not reach the original through __wrapped__: calls "
                    "go to it unpooled, as the legacy calls did (a test double is fine; instrumentation "
                    "should wrap with functools.wraps or wrapt to keep the pool)",
                    module.__name__,
                    name,
                    current,
                )
            return current(*args, **kwargs)
        return pooled(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__module__ = pooled.__module__
    call.__doc__ = pooled.__doc__
    call.__signature__ = inspect.signature(pooled)  # type: ignore[attr-defined]
    return cast(F, call)
