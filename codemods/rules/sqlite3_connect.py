"""PS201 sqlite3-connect: ``sqlite3.connect(...)`` -> ``db_utils.sqlite.connect(...)``.

Name resolution, shadowing, import handling and reporting are shared with PS301 (urlopen) in
:class:`~codemods.rules._redirect.RedirectCallRule`, whose docstring says how a module is handled. What
is PS201's own is which argument lists the pooling drop-in is shown to match: a literal in-memory
database is never pooled, a custom ``factory=`` cannot come from the pool, and ``*args``/``**kwargs`` may
hide either; a connection stored beyond the call is migrated but reported, because it holds a pool slot
until it is closed. Every migrated site carries :data:`WAL_NOTE`: the pool's switch to WAL changes the
user's file for good, which nobody should learn from their backups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import libcst as cst

from codemods.cst.arguments import bind_arguments
from codemods.cst.literals import literal_string
from codemods.rules._redirect import (
    COMMON_REASON_CODES,
    RedirectCallRule,
)
from codemods.rules.base import Verdict

#: sqlite3.connect's parameters in order (Python 3.10-3.13), then its keyword-only ones (3.12+).
SQLITE_POSITIONAL = (
    "database",
    "timeout",
    "detect_types",
    "isolation_level",
    "check_same_thread",
    "factory",
    "cached_statements",
    "uri",
)
SQLITE_KEYWORD_ONLY = ("autocommit",)

#: The message on every migrated site (db_utils/sqlite/pool.py says when the switch happens).
WAL_NOTE = (
    "the file database is switched to WAL on first use, for good; "
    "SQLITE_POOL_WAL=false keeps its journal mode (migration_guide/sqlite.md#wal)"
)


def is_memory_database(text: str) -> bool:
    """``:memory:``, ``""`` (a private temporary database) and ``mode=memory`` / ``file::memory:`` URIs."""
    return text == "" or ":memory:" in text or "mode=memory" in text


class Sqlite3ConnectRule(RedirectCallRule):
    """PS201: route ``sqlite3.connect`` through the pooling drop-in ``db_utils.sqlite.connect``."""

    RULE_ID = "PS201"
    NAME = "sqlite3-connect"
    DESCRIPTION = "sqlite3.connect(...) -> db_utils.sqlite.connect(...), keeping every argument"
    SAFETY = "guarded"
    PREFILTER = ("sqlite3",)
    REASON_CODES: ClassVar[Mapping[str, str]] = {
        **COMMON_REASON_CODES,
        "memory-database": "a literal in-memory or temporary database: never pooled, so nothing to gain",
        "custom-factory": "a custom connection class (factory=) cannot be produced by the pool",
        "dynamic-arguments": "*args/**kwargs may carry factory= or an in-memory database",
        "conn-stored": "migrated; the connection is kept beyond the call (attribute, global)",
    }

    TARGETS = frozenset({"sqlite3.connect", "sqlite3.dbapi2.connect"})
    SOURCE_MODULES = frozenset({"sqlite3", "sqlite3.dbapi2"})
    SHORT_NAME = "connect"
    REPLACEMENT_MODULE = "db_utils.sqlite"
    VALUE_ADVICE = (
        "where it ends up being called is out of sight, and it may be called with factory= or ':memory:'; "
        "pass db_utils.sqlite.connect by hand once those calls are checked"
    )
    DROP_IN_REACHES_STAND_INS = True

    def check_call(self, call: cst.Call) -> Verdict:
        return self._check_arguments(call) or self._stored_verdict(call)

    def check_detached_call(self, call: cst.Call, stored_where: str | None) -> Verdict | None:
        return self._check_arguments(call) or _stored(stored_where)

    def _check_arguments(self, call: cst.Call) -> Verdict | None:
        """The verdict the argument list alone decides; None when the call is migratable so far."""
        bound = bind_arguments(call, SQLITE_POSITIONAL, SQLITE_KEYWORD_ONLY)
        argument = bound.values.get("database")
        database = literal_string(argument, decode_bytes=True)
        if database is not None and is_memory_database(database):
            return Verdict(False, "memory-database", f"database {database!r} is never pooled; left as is")
        template = _formatted_text(argument)
        if template is not None and is_memory_database(template):
            # f"file:{name}?mode=memory&cache=shared": a shared in-memory database, whatever the name
            return Verdict(
                False, "memory-database", f"database {template!r} is in memory, never pooled; left as is"
            )
        if "factory" in bound.values:
            return Verdict(False, "custom-factory", "factory= builds a custom connection class")
        if bound.has_star:
            return Verdict(False, "dynamic-arguments", "*args/**kwargs hide which arguments are passed")
        if bound.problems or "database" not in bound.values:
            problems = bound.problems or ["no database argument"]
            return Verdict(False, "unsupported-argument", "; ".join(problems))
        return None

    def _stored_verdict(self, call: cst.Call) -> Verdict:
        """Migrate; say so when the connection outlives the call (it then holds a pool slot that long)."""
        return _stored(self.stored_where(call))


def _stored(where: str | None) -> Verdict:
    """The verdict of a migratable call whose connection is kept ``where`` (None: not beyond the call)."""
    if where is None:
        return Verdict(True, message=WAL_NOTE)
    return Verdict(
        True,
        "conn-stored",
        f"the connection is stored {where}: it holds a pooled connection until closed; "
        f"close it when done so it returns to the pool; {WAL_NOTE}",
    )


def _formatted_text(expression: cst.BaseExpression | None) -> str | None:
    """An f-string's literal text with each replacement field as ``{}``; None for anything else."""
    if not isinstance(expression, cst.FormattedString):
        return None
    return "".join(
        part.value if isinstance(part, cst.FormattedStringText) else "{}" for part in expression.parts
    )
