"""Lock-serialised variants of the proxy and cursor classes, for ``check_same_thread=False`` connections.

A proxy must make "check that it is open, then use the raw connection" atomic against ``close()``:
otherwise a late operation could run on a raw connection already lent to the next borrower. A proxy
bound to its owner thread (``check_same_thread=True``, sqlite3's default) gets that for free: every
operation and ``close()`` first check the calling thread, so only the owner ever gets that far, and
one thread cannot race with itself. Only a proxy shared between threads needs a lock, and a ``with``
block is a noticeable share of a pooled call's cost, so the owner-bound classes take none and
:func:`serialised` derives, once per class, a subclass that runs the named operations under a
reentrant lock (callbacks such as row factories run inside an operation and may call back in).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

T = TypeVar("T", bound=type)


class Lock(Protocol):
    def __enter__(self) -> object: ...

    def __exit__(self, *exc_info: object) -> object: ...


def serialised(base: T, operations: Iterable[str], lock_of: Callable[[Any], Lock]) -> T:
    """A subclass of ``base`` (same name) whose ``operations`` (methods, or properties' setters) hold
    ``lock_of(self)`` while they run."""
    namespace: dict[str, Any] = {"__slots__": (), "__module__": base.__module__, "__doc__": base.__doc__}
    for name in operations:
        attribute = getattr(base, name)
        if isinstance(attribute, property):
            assert attribute.fset is not None, name
            namespace[name] = attribute.setter(_locked(attribute.fset, lock_of))
        else:
            namespace[name] = _locked(attribute, lock_of)
    return type(base.__name__, (base,), namespace)  # type: ignore[return-value]


def _locked(method: Callable[..., Any], lock_of: Callable[[Any], Lock]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock_of(self):
            return method(self, *args, **kwargs)

    return run
