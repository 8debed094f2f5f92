"""Finding the project's own connection helpers, and resolving names to them.

A helper is found by what it does, not by its name: any module- or class-level function, with any name
and any parameters, whose return value comes from ``psycopg2.connect`` (directly, through a variable, or
with a ``try``/``except`` that returns ``None``), or from ``db_utils.postgres.connect`` once PS100 pooled
it; and, transitively, any function returning such a helper's result (``get_db()`` returning the
project's own ``connect(**kw)``). ``legacy_helpers`` in ``[tool.poolshift]`` adds to what is found.

PS101, PS102 and PS901 (and the runner) must agree on what "a reference to the helper" is, so the
resolution lives here once: by LibCST's ``QualifiedNameProvider`` (imports, aliases, relative imports made
absolute), never by text matching.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from libcst.metadata import QualifiedName

from codemods.cst.syntax import parse_or_none
from codemods.legacy_helpers.returns import FunctionReturns, absolute_name, read_function_returns

__all__ = [
    "CONNECT_FUNCTIONS",
    "DEFAULT_HELPER_NAME",
    "FoundHelper",
    "absolute_name",
    "discover_legacy_helpers",
    "find_helpers",
    "prefilter_names",
    "resolve_helper",
]

DEFAULT_HELPER_NAME = "get_postgres_connection"
#: The calls that open a PostgreSQL connection: psycopg2's, and the pooled drop-in PS100 puts there.
CONNECT_FUNCTIONS = frozenset({"psycopg2.connect", "db_utils.postgres.connect"})
#: Text a file must contain to possibly call one of CONNECT_FUNCTIONS (a prefilter, not a match).
_CONNECT_NEEDLE = "connect"


def resolve_helper(
    qualified_names: Iterable[QualifiedName],
    helpers: Sequence[str],
    module_name: str | None,
    package_name: str | None,
) -> tuple[str | None, bool]:
    """(helper FQN, ambiguous) for the qualified names of an expression.

    A module-level name of the helper's own module resolves to ``<module>.<name>``; a relative import
    is made absolute with the package. ``ambiguous`` is True when the name may be the helper *or*
    something else (e.g. imported, then reassigned): such a site is reported, never rewritten.
    """
    resolved: set[str] = set()
    for qualified in qualified_names:
        name = qualified.name
        if "<locals>" in name:
            resolved.add(name)
            continue
        if qualified.source.name == "LOCAL" and module_name:
            name = f"{module_name}.{name}"
        absolute = absolute_name(name, package_name)
        resolved.add(absolute if absolute is not None else name)
    matching = resolved.intersection(helpers)
    if not matching:
        return None, False
    return sorted(matching)[0], len(resolved) > 1


def prefilter_names(helpers: Sequence[str]) -> tuple[str, ...]:
    """The short names a file must mention to possibly define or refer to a helper (a text prefilter).

    The default name is always among them: discovery looks for it, whatever the configured helpers are.
    """
    return tuple(sorted({DEFAULT_HELPER_NAME, *(helper.rpartition(".")[2] for helper in helpers)}))


@dataclass(frozen=True)
class FoundHelper:
    """A helper found by its behavior: its FQN, file and line, and what its return value comes from."""

    name: str
    path: str
    line: int
    returns_from: tuple[str, ...]  # the connect functions and helpers it returns the result of


def find_helpers(sources: Mapping[str, str], module_names: Mapping[str, str]) -> list[FoundHelper]:
    """Every function in ``sources`` (path -> text) whose return value comes from a connect call.

    Files are parsed only when they mention ``connect`` or the short name of a helper found so far, and
    the search repeats until no new helper appears (a helper may return another module's helper).
    """
    functions: dict[str, tuple[str, FunctionReturns]] = {}
    parsed: set[str] = set()
    needles = {_CONNECT_NEEDLE}
    found: dict[str, FoundHelper] = {}
    while True:
        for path in sorted(sources):
            if path in parsed or not any(needle in sources[path] for needle in needles):
                continue
            parsed.add(path)
            module_name = module_names.get(path)
            module = parse_or_none(sources[path]) if module_name else None
            if module is None or module_name is None:
                continue
            package = module_name if path.endswith("__init__.py") else module_name.rpartition(".")[0]
            for function in read_function_returns(module, module_name, package):
                functions[function.name] = (path, function)
        grown = _helpers_among(functions, found)
        new_needles = {name.rpartition(".")[2] for name in grown} - needles
        if not grown and not new_needles:
            return sorted(found.values(), key=lambda helper: helper.name)
        needles |= new_needles


def _helpers_among(
    functions: Mapping[str, tuple[str, FunctionReturns]], found: dict[str, FoundHelper]
) -> set[str]:
    """Add to ``found`` every function that returns a connection; the names added (a fixed point)."""
    added: set[str] = set()
    changed = True
    while changed:
        changed = False
        connectors = CONNECT_FUNCTIONS | set(found)
        for name, (path, function) in functions.items():
            if name in found:
                continue
            origins = _connection_origins(function, connectors)
            if origins:
                found[name] = FoundHelper(name, path, function.line, origins)
                added.add(name)
                changed = True
    return added


def _connection_origins(function: FunctionReturns, connectors: set[str] | frozenset[str]) -> tuple[str, ...]:
    """The connectors every non-None return of ``function`` calls; () if one returns anything else."""
    origins: set[str] = set()
    for source in function.sources:
        if source is None:
            continue
        if not isinstance(source, frozenset) or not source or not source <= connectors:
            return ()
        origins |= source
    return tuple(sorted(origins))


def discover_legacy_helpers(sources: Mapping[str, str], module_names: Mapping[str, str]) -> tuple[str, ...]:
    """FQNs of every helper :func:`find_helpers` finds in ``sources`` (path -> text)."""
    return tuple(helper.name for helper in find_helpers(sources, module_names))
