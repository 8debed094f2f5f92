"""Which SQL statements leave state in a PostgreSQL *session* that a rollback does not undo.

A pooled connection is handed to the next borrower after a rollback. Most state dies with the
transaction, but some outlives it: ``SET`` (without ``LOCAL``), temporary tables, prepared statements,
``LISTEN``, cursors ``WITH HOLD``, session-level advisory locks, ``set_config(..., false)``. Such a
connection gets ``DISCARD ALL`` on return (what PgBouncer runs between clients). A few changes cannot be
undone by ``DISCARD ALL`` at all (``LOAD`` of a library, a changed client encoding, which psycopg2 also
caches client-side); those connections are closed instead of reused.

Code the check cannot see into may change any of that: a ``DO`` block, a ``CALL``, and a call of any
function that is not one of PostgreSQL's built-ins (:mod:`~db_utils.postgres.catalog`), since the
application's ``login(42)`` may run ``set_config('app.user_id', ..., false)``. Such statements count as
session state too. A custom variable (``SET app.tenant``, ``set_config('app.x', ...)``, even ``LOCAL``)
cannot be undone at all: ``DISCARD ALL`` resets it to ``''`` but the session keeps it defined, where a
fresh one answers ``current_setting('app.tenant', true)`` with NULL, so such a connection is closed.
(Only the text is seen: a trigger or a function doing that still gets ``DISCARD ALL`` only, unless
``DB_POOL_CLOSE_AFTER_FUNCTIONS`` names the function; ``DB_POOL_CLEAN_FUNCTIONS`` names functions that
need no reset at all. See migration_guide/postgres.md.)

The answer for a statement text is computed once and memoised, so the check is cheap on the hot path,
and deliberately conservative: the leading keyword, a regular-expression scan for the few functions and
clauses that can hide inside an ordinary ``SELECT``, and the names of the functions it calls. A false
positive costs one ``DISCARD ALL`` round trip (or a reconnect, for a custom variable); a false negative
would leak state to another request, so every doubt resolves to "dirty".
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re

from db_utils.config import ConfigError
from db_utils.postgres.catalog import CATALOG_FUNCTIONS

#: No session state touched: a rollback is a full reset.
CLEAN = 0
#: Server-side session state changed; ``DISCARD ALL`` restores a fresh session.
SESSION_STATE = 1
#: State ``DISCARD ALL`` cannot undo: the connection must be closed, not reused.
UNRESETTABLE = 2

# Statements whose leading keyword alone means "session state": SET/RESET (except the transaction-scoped
# forms, filtered below), PREPARE, LISTEN, DECLARE (WITH HOLD survives the transaction; cheaper to treat
# every DECLARE as dirty than to parse), DISCARD/DEALLOCATE (harmless, but they mean the caller manages
# session state), CREATE ... TEMP.
# DO and CALL run code the check cannot see.
_LEADING_SESSION = frozenset(
    {"set", "reset", "prepare", "listen", "declare", "discard", "deallocate", "do", "call"}
)
_TRANSACTION_SCOPED_SET = ("set local", "set transaction", "set constraints")
_UNRESETTABLE_LEADING = frozenset({"load"})

# Anywhere in a statement: temporary objects (CREATE [OR REPLACE] [LOCAL|GLOBAL] TEMP ..., SELECT ... INTO
# TEMP ...), session-level advisory locks (the _xact_ variants die with the transaction and do not match),
# set_config (treated as session-scoped whatever its third argument: cheap and safe), encoding changes.
_ANYWHERE = re.compile(
    r"\b(?:create|into)\s+(?:(?:or\s+replace|local|global)\s+)*temp(?:orary)?\b"
    r"|pg_(?:try_)?advisory_lock|set_config|client_encoding",
    re.IGNORECASE,
)
_ENCODING = re.compile(r"client_encoding|^\s*set\s+names\b", re.IGNORECASE)
# A custom variable (a dotted name): SET [SESSION|LOCAL] app.x (matched after the leading SET), and
# set_config('app.x', ...) or any set_config whose name is not a literal without a dot (a parameter).
_CUSTOM_SET = re.compile(r"\s+(?:(?:session|local)\s+)?(?:\"[^\"]*\.|[^\W\d][\w$]*\s*\.)", re.IGNORECASE)
_CUSTOM_SET_CONFIG = re.compile(r"set_config\s*\((?!\s*'[^'.]*'\s*,)", re.IGNORECASE)
_LEADING_WORD = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*([A-Za-z]+)", re.DOTALL)


def classify(statement: str) -> int:
    """Return CLEAN, SESSION_STATE or UNRESETTABLE for one SQL statement (or a batch of them)."""
    # Optimisation: the scans below walk the whole statement (the _ANYWHERE search), on every execute().
    # Applications run the same few hundred SQL strings over and over, and the answer depends on the
    # text alone, so it is memoised (lru_cache is thread-safe and C-fast).
    # Only statements up to _CACHED_LENGTH characters are kept, so the cache stays small (a generated
    # multi-megabyte INSERT is classified each time; its own cost dwarfs the scan anyway).
    if len(statement) <= _CACHED_LENGTH:
        return _classify_cached(statement)
    return _classify(statement)


_CACHED_LENGTH = 2048


def _classify(statement: str) -> int:  # noqa: PLR0911 - one return per rule, in the order they apply
    match = _LEADING_WORD.match(statement)
    leading = match.group(1).lower() if match else ""
    if leading in _UNRESETTABLE_LEADING:
        return UNRESETTABLE
    if leading == "show" and ";" not in statement.rstrip().rstrip(";"):
        return CLEAN  # one SHOW only reads a setting (``SHOW client_encoding`` changes nothing)
    if leading == "set" and match is not None and _CUSTOM_SET.match(statement, match.end(1)):
        return UNRESETTABLE  # even SET LOCAL leaves the variable defined (see the module docs)
    effect = CLEAN
    if leading in _LEADING_SESSION and not _is_transaction_scoped(statement, match):
        effect = SESSION_STATE
    found = _ANYWHERE.search(statement)
    if found is not None or effect != CLEAN:
        # psycopg2 caches the client encoding: a server-side change desynchronises the two for good.
        if _ENCODING.search(statement):
            return UNRESETTABLE
        if found is not None and _CUSTOM_SET_CONFIG.search(statement):
            return UNRESETTABLE
        return max(SESSION_STATE, _effect_of_calls(statement, leading))
    if ";" in statement.rstrip().rstrip(";"):
        # A batch of several statements: classify every part (rare, so the split is affordable).
        return max((classify(part) for part in statement.split(";") if part.strip()), default=CLEAN)
    return _effect_of_calls(statement, leading)


# String literals (standard, E'' and dollar-quoted) and comments: no code in them.
_LITERALS = re.compile(
    r"[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|\$((?:[^\W\d]\w*)?)\$.*?\$\1\$|--[^\n]*|/\*.*?\*/",
    re.DOTALL,
)
_IDENTIFIER = r'(?:"(?:[^"]|"")+"|[^\W\d][\w$]*)'
# A name (possibly schema-qualified) followed by "(": a function call, or syntax (see below).
_CALL = re.compile(rf"({_IDENTIFIER}(?:\s*\.\s*{_IDENTIFIER})*)\s*\(")
_WORD_BEFORE = re.compile(r"([A-Za-z_]+)\s*$")
_LOOK_BACK = 64  # characters searched for that word: a long statement is never rescanned per call
# Words followed by "(" that are SQL syntax or type modifiers, not function calls.
_SYNTAX_WORDS = """
    all and any array as between by case cast check coalesce collation conflict cube current_time
    current_timestamp default distinct else enum except exclude exists extract filter for from greatest
    group grouping having hash ilike in include inherits intersect is join key lateral least like limit
    list localtime localtimestamp not nullif offset on or order over overlay partition position range
    repeatable return returning rollup row select set sets similar some substring table then to treat
    trim union unique using values when where window with within xmlattributes xmlelement xmlforest
    varchar char character varying decimal numeric float timestamp time interval bit double precision
    copy explain analyze vacuum materialized
    """
_SYNTAX = frozenset(_SYNTAX_WORDS.split())
# Words after which a name followed by "(" is a table, a type or a routine being named, not called:
# INSERT INTO t (a, b), CREATE TABLE t (...), REFERENCES t (id), AS u(id), WITH cte(a) AS,
# CREATE FUNCTION f(a int), EXECUTE FUNCTION f(), DROP FUNCTION IF EXISTS f(int).
_NAMING_WORDS = """
    aggregate as copy exists function index into of procedure recursive references routine statistics
    table tablesample view with
    """
_NAMING = frozenset(_NAMING_WORDS.split())
# ... and in DDL only, ON and USING (CREATE INDEX i ON t USING gin (a)): in a query, JOIN t ON
# my_check(t.a) is a call.
_DDL = frozenset({"create", "alter", "drop", "comment", "grant", "revoke"})
_NAMING_IN_DDL = _NAMING | {"on", "using"}


def _code_of(statement: str) -> str:
    """``statement`` without its string literals and comments."""
    return _LITERALS.sub(" ", statement)


def _effect_of_calls(statement: str, leading: str) -> int:
    """What the functions ``statement`` (whose first keyword is ``leading``) calls may do to the session:
    CLEAN for PostgreSQL's built-ins and those ``DB_POOL_CLEAN_FUNCTIONS`` names, UNRESETTABLE for one
    ``DB_POOL_CLOSE_AFTER_FUNCTIONS`` names, SESSION_STATE for any other (see the module docs)."""
    if "(" not in statement:
        return CLEAN
    clean, close_after = _declared if _declared is not None else read_declared_functions()
    naming = _NAMING_IN_DDL if leading in _DDL else _NAMING
    code = _code_of(statement)
    effect = CLEAN
    for call in _CALL.finditer(code):
        parts = [part.strip() for part in call.group(1).split(".")]
        name = _unquoted(parts[-1])
        if len(parts) == 1 and name in _SYNTAX:
            continue
        before = _WORD_BEFORE.search(code, max(0, call.start() - _LOOK_BACK), call.start())
        if before is not None and before.group(1).lower() in naming:
            continue
        qualified = ".".join(_unquoted(part) for part in parts)
        if _matches(close_after, name, qualified):
            return UNRESETTABLE
        if name in CATALOG_FUNCTIONS and (len(parts) == 1 or _unquoted(parts[0]) == "pg_catalog"):
            continue
        if not _matches(clean, name, qualified):
            effect = SESSION_STATE
    return effect


#: Functions of the application's or of extensions that change no session state: no reset for them.
CLEAN_FUNCTIONS_VARIABLE = "DB_POOL_CLEAN_FUNCTIONS"
#: Functions that set a custom variable (``set_config('app.user_id', ...)``): their connection is closed.
CLOSE_AFTER_FUNCTIONS_VARIABLE = "DB_POOL_CLOSE_AFTER_FUNCTIONS"
_PATTERN = re.compile(r"[\w$*]+(?:\.[\w$*]+)?")
_declared: tuple[tuple[str, ...], tuple[str, ...]] | None = None


def _matches(patterns: tuple[str, ...], name: str, qualified: str) -> bool:
    """Whether one of ``patterns`` names the function, bare or schema-qualified (``*`` globs)."""
    return any(
        fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(qualified, pattern) for pattern in patterns
    )


def read_declared_functions() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Read ``DB_POOL_CLEAN_FUNCTIONS`` and ``DB_POOL_CLOSE_AFTER_FUNCTIONS`` again (at first use, and from
    ``dispose_pools()``), forgetting every statement classified under other values. A bad value is a
    ConfigError naming the variable."""
    global _declared  # noqa: PLW0603 - process-wide settings, read like the others at first use
    declared = (_patterns(CLEAN_FUNCTIONS_VARIABLE), _patterns(CLOSE_AFTER_FUNCTIONS_VARIABLE))
    if declared != _declared:
        _declared = declared
        _classify_cached.cache_clear()
        statement_facts_cache.clear()
    return declared


def _patterns(variable: str) -> tuple[str, ...]:
    raw = os.environ.get(variable, "")
    patterns = tuple(item.strip().lower() for item in raw.split(",") if item.strip())
    for pattern in patterns:
        if not _PATTERN.fullmatch(pattern):
            raise ConfigError(
                f"{variable}={raw!r}: {pattern!r} is not a function name or pattern "
                "(comma-separated names, optionally schema-qualified; * matches any characters)"
            )
    return patterns


def _unquoted(identifier: str) -> str:
    """An identifier as PostgreSQL stores it: quoted verbatim, unquoted folded to lower case."""
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier.lower()


# At most 1024 statements of <= 2048 characters: a few MB in the worst case, usually far less.
_classify_cached = functools.lru_cache(maxsize=1024)(_classify)


def leading_keyword(statement: str) -> str:
    """The statement's first keyword, lower-cased, after any comments ("" if none)."""
    match = _LEADING_WORD.match(statement)
    return match.group(1).lower() if match else ""


def _is_transaction_scoped(statement: str, match: re.Match[str] | None) -> bool:
    """``SET LOCAL``/``SET TRANSACTION``/``SET CONSTRAINTS`` end with the transaction: not session state."""
    if match is None:
        return False
    rest = statement[match.start(1) :].lower()
    return rest.startswith(_TRANSACTION_SCOPED_SET)


def query_text(query: object, connection: object) -> str | None:
    """The SQL text of what psycopg2 accepts as a query (``str``, ``bytes``, ``sql.Composable``), or None."""
    if isinstance(query, str):
        return query
    if isinstance(query, (bytes, bytearray, memoryview)):
        # Keywords are ASCII: latin-1 decodes any byte string without failing.
        return bytes(query).decode("latin-1")
    as_string = getattr(query, "as_string", None)
    if as_string is None:
        return None
    try:
        text = as_string(connection)
    except Exception:  # the driver will report the real problem when it executes the query
        return None
    return text if isinstance(text, str) else None


def classify_query(query: object, connection: object) -> int:
    """Classify what psycopg2 accepts as a query: ``str``, ``bytes`` or a ``psycopg2.sql.Composable``."""
    if isinstance(query, str):  # Optimisation: the everyday case, without a call
        return classify(query)
    text = query_text(query, connection)
    return SESSION_STATE if text is None else classify(text)  # unknown query object: assume the worst


# -- statements that need a database free of other sessions ----------------------------------------------
# DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE DATABASE ... TEMPLATE x fail while
# any other session is connected to the database they name. Idle pooled connections are such sessions,
# so the pool closes its idle connections to that database before the statement runs.
_IDENTIFIER = r'("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_DATABASE_DDL = re.compile(
    r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(?:"
    rf"drop\s+database\s+(?:if\s+exists\s+)?{_IDENTIFIER}"
    rf"|alter\s+database\s+{_IDENTIFIER}\s+(?:rename\b|set\s+tablespace\b)"
    rf"|create\s+database\s+{_IDENTIFIER}.*?\btemplate\s*(?:=\s*)?{_IDENTIFIER}"
    r")",
    re.IGNORECASE | re.DOTALL,
)


def database_ddl_target(query: object, connection: object) -> str | None:
    """The database a statement needs free of other sessions (see above), or None for any other statement.

    Names come back as the server stores them: unquoted identifiers folded to lower case, quoted ones
    verbatim.
    """
    if isinstance(query, str):  # Optimisation: the everyday case, without a call
        return _ddl_target(query) if len(query) <= _CACHED_LENGTH else None
    text = query_text(query, connection)
    return None if text is None or len(text) > _CACHED_LENGTH else _ddl_target(text)


@functools.lru_cache(maxsize=1024)
def _ddl_target(statement: str) -> str | None:
    match = _DATABASE_DDL.match(statement)
    if match is None:
        return None
    dropped, altered, _created, template = match.groups()
    name = dropped or altered or template
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


# -- both facts at once, for the tracking cursor's execute() ---------------------------------------------
#: SQL text -> (classify, database_ddl_target): one dict read per everyday execute() instead of two calls
#: each through an lru_cache. Bounded like those caches; cleared when full (a rare, cheap rebuild).
statement_facts_cache: dict[str, tuple[int, str | None]] = {}
_FACTS_LIMIT = 1024


#: The facts of a statement that changes nothing and names no database: one shared tuple, so the cursor's
#: hot path tells it by identity.
CLEAN_FACTS: tuple[int, str | None] = (CLEAN, None)


def statement_facts(query: object, connection: object) -> tuple[int, str | None]:
    """``(classify_query(query), database_ddl_target(query))``, memoised for short ``str`` statements."""
    facts = (classify_query(query, connection), database_ddl_target(query, connection))
    if facts == CLEAN_FACTS:
        facts = CLEAN_FACTS
    if isinstance(query, str) and len(query) <= _CACHED_LENGTH:
        if len(statement_facts_cache) >= _FACTS_LIMIT:
            statement_facts_cache.clear()
        statement_facts_cache[query] = facts
    return facts
