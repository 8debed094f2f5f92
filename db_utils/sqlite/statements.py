"""Which SQL leaves per-connection state behind that a rollback cannot undo.

A pooled SQLite connection is only safe to hand to the next borrower if it is indistinguishable from a
fresh one after rollback. A few statements change the *connection* rather than the database: pragma
assignments (``query_only``, ``foreign_keys``, ``busy_timeout``...), ``ATTACH``/``DETACH`` and temporary
objects (``CREATE TEMP TABLE``, ``CREATE TABLE temp.x``). The pragmas :mod:`db_utils.sqlite.pragmas` can
read back and restore are reported by name, and the pool restores them on return; anything else marks
the connection dirty, and a dirty connection is closed on return instead of reused.

It also notes SQL that writes the database file without changing rows (``CREATE``, ``DROP``, ``ALTER``,
``VACUUM``, ``REINDEX``, ``ANALYZE``, ``PRAGMA user_version = n``): ``Connection.total_changes``, which
tells the pool that a lease wrote rows, does not count those, and the pool must checkpoint after them too.

``PRAGMA journal_mode = <mode>`` is dirty as far as the SQL alone can tell, but when it sets a mode the
database already has it changes nothing: the common helper that runs ``PRAGMA journal_mode = WAL`` on
every connection of a database already in WAL. Only the connection knows its current mode, so the
analysis names the modes such SQL sets (``SqlAnalysis.journal_modes``) and the proxy reads the mode back
before the SQL runs, keeping the connection clean when every one of them is the current mode.

The check errs on the side of "dirty": a false positive only costs one reconnect, a false negative leaks
state into another caller's connection. It runs on every ``execute``, so it is cached per SQL string and a
cheap regex rejects the vast majority of statements before any tokenizing.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

from db_utils.sqlite.pragmas import JOURNAL_MODES, RESTORABLE, literal_value

_MAYBE_STATEFUL = re.compile(
    r"pragma|attach|detach|temp|\b(?:create|drop|alter|vacuum|reindex|analyze)\b", re.IGNORECASE
)
# Statements that write the database file without counting in total_changes (see the module docstring).
_SCHEMA_WRITES = frozenset({"CREATE", "DROP", "ALTER", "VACUUM", "REINDEX", "ANALYZE"})

# Comments, string literals and quoted identifiers, so that their text is never mistaken for keywords.
_NOISE = re.compile(
    r"""--[^\n]*|/\*.*?(?:\*/|\Z)|'(?:[^']|'')*(?:'|\Z)|"(?:[^"]|"")*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z)|\[[^\]]*(?:\]|\Z)""",
    re.DOTALL,
)
# Numbers and signs are tokens of their own so a pragma's value is only read when it is exactly a literal.
# A quoted plain word (``'wal'``, ``"wal"``) is one token that keeps its leading quote (see _blank).
_TOKEN = re.compile(r"'?[A-Za-z_][A-Za-z_0-9$]*|[0-9]+|[=(.;+-]")
_WORD = re.compile(r"[A-Za-z]+")
_UTF8 = re.compile(r"utf-?8", re.IGNORECASE)
_QUOTED = "'"

# Pragmas that take a parenthesised argument but only *read*: used by iterdump() and schema inspection,
# which must stay cheap. Every other pragma with an argument, or with ``=``, marks the connection dirty.
_READ_ONLY_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
        "wal_checkpoint",
    }
)
# Pragmas that write the database file, not the connection: transactional like any other write.
_DATABASE_PRAGMAS = frozenset({"user_version", "application_id"})


class SqlEffect(enum.IntFlag):
    """What running a piece of SQL does to the connection beyond the database contents."""

    NONE = 0
    DIRTY = 1  # per-connection state a rollback cannot undo
    JOURNAL_MODE = 2  # the caller chooses the journal mode itself (so poolshift must not)
    PRAGMA = 4  # sets pragmas the pool restores on return (SqlAnalysis.pragmas names them)
    WRITES = 8  # writes the database file without changing rows (schema, VACUUM, user_version...)


@dataclass(frozen=True)
class SqlAnalysis:
    """``effect``; why it makes the connection dirty (for messages; non-empty exactly when ``DIRTY``); the
    restorable pragmas it sets, in order, each with the value it stores when that is a plain literal (None
    when it is not; non-empty exactly when ``PRAGMA``); ``writes``: true exactly when ``WRITES``."""

    effect: SqlEffect = SqlEffect.NONE
    reason: str = ""
    pragmas: tuple[tuple[str, int | None], ...] = ()
    writes: bool = False
    #: The journal modes the SQL's ``journal_mode`` writes set, in order, when those writes are all that
    #: makes it dirty and each names its mode for certain (see _journal_mode_set); empty otherwise. The
    #: SQL then changes nothing if every one is the connection's current mode: the proxy checks.
    journal_modes: tuple[str, ...] = ()


#: The analysis of SQL that leaves nothing behind: analyze() returns this very object, so callers test
#: it with ``is``.
NOTHING = SqlAnalysis()


@functools.lru_cache(maxsize=2048)
def analyze(sql: str) -> SqlAnalysis:
    """The combined effect of every statement in ``sql`` (a script may hold several)."""
    if not isinstance(sql, str) or not _MAYBE_STATEFUL.search(sql):
        return NOTHING
    effect, reasons, pragmas = SqlEffect.NONE, list[str](), list[tuple[str, int | None]]()
    modes, only_modes = list[str](), True
    for statement in _statements(sql):
        statement_effect, detail, value, mode = _statement_effect(statement)
        effect |= statement_effect
        if statement[0] in _SCHEMA_WRITES:
            effect |= SqlEffect.WRITES
        if statement_effect & SqlEffect.DIRTY:
            reasons.append(detail)
            if mode is None:
                only_modes = False
            else:
                modes.append(mode)
        elif statement_effect & SqlEffect.PRAGMA:
            pragmas.append((detail, value))
    if effect is SqlEffect.NONE:
        return NOTHING
    reason = ", ".join(dict.fromkeys(reasons))
    journal_modes = tuple(modes) if only_modes else ()
    return SqlAnalysis(effect, reason, tuple(pragmas), bool(effect & SqlEffect.WRITES), journal_modes)


def sql_effect(sql: str) -> SqlEffect:
    return analyze(sql).effect


def _statements(sql: str) -> list[list[str]]:
    """Upper-cased tokens of each statement, with comments, strings and quoted names blanked out."""
    tokens = _TOKEN.findall(_NOISE.sub(_blank, sql))
    statements: list[list[str]] = [[]]
    for piece in tokens:
        if piece == ";":
            statements.append([])
        else:
            statements[-1].append(piece.upper())
    return [s for s in statements if s]


def _blank(match: re.Match[str]) -> str:
    # A quoted identifier may still name the temp schema (CREATE TABLE "temp".x): keep that one word.
    text = match.group()
    inner = text[1:-1]
    if text[0] in '"`[' and inner.lower() in ("temp", "temporary"):
        return " TEMP "
    if _UTF8.fullmatch(inner):  # encoding = 'UTF-8' (see _pragma_effect): one token, behind its quote
        return f" {_QUOTED}UTF8 "
    # A quoted plain word may be a pragma's value (journal_mode = 'wal'). Kept behind a quote, it can
    # never be mistaken for a keyword or a name: only _journal_mode_set reads it.
    closing = "]" if text[0] == "[" else text[0]
    if text[0] in "'\"`[" and len(text) > 2 and text[-1] == closing and _WORD.fullmatch(inner):
        return f" {_QUOTED}{inner} "
    return " ? "


#: A statement's effect; the dirty reason, or the restorable pragma's name; that pragma's literal value;
#: the journal mode a ``journal_mode`` write sets, when the proxy may check it (see _journal_mode_set).
Effect = tuple[SqlEffect, str, int | None, str | None]
_NO_EFFECT: Effect = (SqlEffect.NONE, "", None, None)


def _statement_effect(tokens: list[str]) -> Effect:
    """One statement's effect (see :data:`Effect`)."""
    head = tokens[0]
    if head == "PRAGMA":
        return _pragma_effect(tokens[1:])
    if head in ("ATTACH", "DETACH"):
        return SqlEffect.DIRTY, head, None, None
    if head == "CREATE" and ("TEMP" in tokens or "TEMPORARY" in tokens):
        # CREATE TEMP TABLE / CREATE TEMPORARY VIEW / CREATE TABLE temp.x: the temp schema belongs to
        # the connection and survives a rollback once committed.
        return SqlEffect.DIRTY, "a temporary object (CREATE TEMP ...)", None, None
    return _NO_EFFECT


def _pragma_effect(tokens: list[str]) -> Effect:
    # PRAGMA [schema.]name [= value | (value)]
    schema = ""
    if len(tokens) >= 3 and tokens[1] == ".":
        schema, tokens = tokens[0].lower(), tokens[2:]
    if not tokens:
        return _NO_EFFECT
    name, rest = tokens[0].lower(), tokens[1:]
    # A bare ``PRAGMA name`` only reads the setting.
    if (
        not rest
        or (rest[0] == "(" and name in _READ_ONLY_PRAGMAS)
        or _sets_fresh_encoding(name, schema, rest)
    ):
        return _NO_EFFECT
    # The temp schema's header belongs to the connection (its temp database), so only main's is database
    # content; another attached schema already made the connection dirty with its ATTACH.
    if name in _DATABASE_PRAGMAS and schema != "temp":
        return SqlEffect.WRITES, "", None, None
    if name == "journal_mode":
        mode = _journal_mode_set(schema, rest)
        return SqlEffect.DIRTY | SqlEffect.JOURNAL_MODE, "PRAGMA journal_mode", None, mode
    # ``main.`` names what an unqualified pragma sets; another schema (temp, an attached one) is not
    # what the pool reads back, so it stays dirty.
    if name in RESTORABLE and schema in ("", "main"):
        value = literal_value(name, rest[1:]) if rest[0] in ("=", "(") else None
        return SqlEffect.PRAGMA, name, value, None
    return SqlEffect.DIRTY, f"PRAGMA {schema + '.' if schema else ''}{name}", None, None


def _sets_fresh_encoding(name: str, schema: str, rest: list[str]) -> bool:
    """``PRAGMA encoding = 'UTF-8'``, which schema scripts start with: ``encoding`` only decides how a
    database not created yet will be, UTF-8 is what every connection sqlite3 opens starts with
    (``sqlite3_open``), and on a database with content any value is ignored. So it leaves the connection
    as a fresh one; UTF-16 does not."""
    return (
        name == "encoding"
        and schema in ("", "main")
        and len(rest) == 2
        and rest[0] in ("=", "(")
        and rest[1] in ("UTF8", f"{_QUOTED}UTF8")
    )


def _journal_mode_set(schema: str, rest: list[str]) -> str | None:
    """The mode ``PRAGMA [schema.]journal_mode <rest>`` sets, when setting it to the connection's current
    mode (``PRAGMA main.journal_mode``) is certain to change nothing; None otherwise.

    The value must be one of SQLite's mode names, spelled out: SQLite also accepts any prefix of one
    (``'w'``), and takes an unknown word for a read. Only ``main``'s mode is read back, while an
    unqualified write sets the mode of every open schema, the connection's temp database included: WAL
    never applies to temporary storage, and DELETE is what a temp database on disk has while one in
    memory cannot leave MEMORY, so only those two leave temp as it was. Other modes must name ``main``.
    """
    if schema not in ("", "main") or len(rest) != 2 or rest[0] not in ("=", "("):
        return None
    mode = rest[1].removeprefix(_QUOTED).lower()
    if mode not in JOURNAL_MODES or (not schema and mode not in ("wal", "delete")):
        return None
    return mode
