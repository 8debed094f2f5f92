"""What a ``sqlite3.connect`` call opens, and whether it may be pooled at all.

Pooling is only invisible for databases that outlive a single connection: a file. ``:memory:``, the
empty name (a private temporary database) and memory URIs (``file::memory:``, ``mode=memory``) give each
connection its own database, or one that vanishes with its last connection; pooling would make two
``connect()`` calls share data or keep a database alive that the caller expects gone. Those calls go to
``sqlite3.connect`` untouched, as does anything this module cannot classify with certainty (a custom
``vfs=``, an unusual argument type): sqlite3 then gives exactly its own behavior and its own errors.

Names starting with ``file:`` are classified as URIs even when ``uri=False``, because SQLite builds with
``SQLITE_USE_URI=1`` (common, including this one) interpret them as URIs anyway; classifying them as URIs
can only make poolshift more cautious.

A pooled connection keeps its file open, so a file deleted, renamed or replaced between two ``connect()``
calls would live on in the pool: sqlite3 would open (or create) whatever is at the path now, an idle pooled
connection still reads the old inode. :func:`file_identity` is what the pool compares before reusing one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Target:
    """A poolable database: the exact name to open, the identity to pool by, and whether WAL may apply.

    ``identity`` differs from ``open_name`` for relative URIs: their meaning depends on the current
    directory, so the directory is part of the identity. ``file_path`` is the absolute path of the database
    file itself (a URI's path part), whose :func:`file_identity` the pool checks before reusing a connection.
    """

    open_name: str
    file_path: str
    identity: str
    label: str
    wal_allowed: bool
    cwd_independent: bool


def resolve_target(database: Any, uri: object) -> Target | None:
    """The poolable target of a ``connect(database, uri=...)`` call, or None to leave it to sqlite3."""
    try:
        name = os.fsdecode(os.fspath(database))
    except (TypeError, ValueError):
        return None  # let sqlite3.connect raise its own error for this argument
    if name in ("", ":memory:") or "\x00" in name:
        return None
    if name.startswith("file:"):
        return _resolve_uri(name)
    path = os.path.abspath(name)
    return Target(
        open_name=path,
        file_path=path,
        identity=path,
        label=path,
        wal_allowed=True,
        cwd_independent=os.path.isabs(name),
    )


def _resolve_uri(name: str) -> Target | None:
    parts = urlsplit(name)
    path = unquote(parts.path)
    params = {key.lower(): [v.lower() for v in values] for key, values in parse_qs(parts.query).items()}
    if path in ("", ":memory:") or "memory" in params.get("mode", ()):
        return None
    if "vfs" in params or parts.netloc not in ("", "localhost"):
        return None  # custom VFS (memdb, ...) or a host sqlite3 rejects: not ours to judge
    read_only = (
        "ro" in params.get("mode", ()) or _truthy(params.get("immutable")) or _truthy(params.get("nolock"))
    )
    absolute = os.path.isabs(path)
    identity = name if absolute else f"{os.getcwd()}{os.sep}{name}"
    return Target(
        open_name=name,
        file_path=os.path.abspath(path),
        identity=identity,
        label=name,
        wal_allowed=not read_only,
        cwd_independent=absolute,
    )


def file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path`` now, or None if there is none (deleted, or unreadable)."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return (status.st_dev, status.st_ino)


def wal_identity(path: str) -> tuple[int, int] | None:
    """:func:`file_identity` of a file that is often absent (a -wal): ``os.access`` answers "absent"
    without the exception ``os.stat`` raises, which costs more than the stat itself."""
    return file_identity(path) if os.access(path, os.F_OK) else None


def _truthy(values: list[str] | None) -> bool:
    """SQLite's boolean URI parameters: 1/yes/true/on enable them."""
    return bool(values) and values[-1] in ("1", "yes", "true", "on")  # type: ignore[index]
