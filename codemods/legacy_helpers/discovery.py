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

import ast
import hashlib
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from libcst.metadata import QualifiedName

from codemods.cst.syntax import parse_or_none
from codemods.legacy_helpers.returns import FunctionReturns, absolute_name, read_function_returns

__all__ = [
    "CONNECT_FUNCTIONS",
    "DEFAULT_HELPER_NAME",
    "ContentKeys",
    "FoundHelper",
    "MentionIndex",
    "absolute_name",
    "absolute_names",
    "discover_legacy_helpers",
    "find_helpers",
    "helper_shapes",
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
    resolved = absolute_names(qualified_names, module_name, package_name)
    matching = resolved.intersection(helpers)
    if not matching:
        return None, False
    return sorted(matching)[0], len(resolved) > 1


def absolute_names(
    qualified_names: Iterable[QualifiedName], module_name: str | None, package_name: str | None
) -> set[str]:
    """The absolute names an expression may stand for: a module-level name of this module becomes
    ``<module>.<name>``, a relative import is made absolute with the package; function locals stay as
    LibCST names them (``f.<locals>.x``)."""
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
    return resolved


def prefilter_names(helpers: Sequence[str]) -> tuple[str, ...]:
    """The short names a file must mention to possibly define or refer to a helper (a text prefilter).

    The default name is always among them: discovery looks for it, whatever the configured helpers are.
    """
    return tuple(sorted({DEFAULT_HELPER_NAME, *(helper.rpartition(".")[2] for helper in helpers)}))


class AnswerCache(Protocol):
    """Where :func:`find_helpers` keeps its per-file answers: ``codemods.cache.ResultCache``, a layer up."""

    def get(self, table: str, key: str) -> Any: ...

    def put(self, table: str, key: str, value: Any) -> None: ...


@runtime_checkable
class MentionIndex(Protocol):
    """Sources that answer "does this file's text contain one of these words" without decoding every file
    (``codemods.project.ProjectSources``, a layer up): exactly ``any(word in sources[path] ...)``, False
    for a path with no text."""

    def mentions(self, path: str, words: Collection[str]) -> bool: ...


@runtime_checkable
class ContentKeys(Protocol):
    """Sources that name each file's content without decoding it (``codemods.project.ProjectSources``,
    from the file's bytes or the stat facts of an unchanged file): discovery's cached answers are found
    by that name, so an unchanged file need not even be read. None for a path with no content."""

    def content_key(self, path: str) -> str | None: ...


def _text_mentions(sources: Mapping[str, str], path: str, words: Collection[str]) -> bool:
    text = sources.get(path)
    return text is not None and any(word in text for word in words)


class _NoCache:
    def get(self, table: str, key: str) -> Any:
        return None

    def put(self, table: str, key: str, value: Any) -> None:
        return None


def answer_key(kind: str, source: str, *names: str) -> str:
    """The key of one file's answer: what it is, the file's content (its text, or the name
    :class:`ContentKeys` gives it) and the names it was read under."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in (kind, source, *names):
        hasher.update(part.encode("utf-8", "surrogateescape"))
        hasher.update(b"\0")
    return hasher.hexdigest()


@dataclass(frozen=True)
class FoundHelper:
    """A helper found by its behavior: its FQN, file and line, and what its return value comes from."""

    name: str
    path: str
    line: int
    returns_from: tuple[str, ...]  # the connect functions and helpers it returns the result of


def find_helpers(
    sources: Mapping[str, str], module_names: Mapping[str, str], cache: AnswerCache | None = None
) -> list[FoundHelper]:
    """Every function in ``sources`` (path -> text) whose return value comes from a connect call.

    Files are looked at in ``module_names`` order (sorted paths); one without a module name or a text is
    skipped.

    Each file is first summarised with CPython's parser (:func:`helper_shapes`); a file is parsed with
    LibCST only when one of its functions may return nothing but calls of ``connect`` or of a helper
    found so far, and the search repeats until no new helper appears (a helper may return another
    module's helper). With ``cache``, both answers are kept per file content, so an unchanged tree is not
    parsed again.
    """
    cache = cache or _NoCache()
    functions: dict[str, tuple[str, FunctionReturns]] = {}
    parsed: set[str] = set()
    needles = {_CONNECT_NEEDLE}
    found: dict[str, FoundHelper] = {}
    shapes: dict[str, list[list[list[str]]]] = {}
    mentions, content = _access(sources)
    # Only files that have a module name and a text are looked at; most do not mention a needle at all,
    # which ``mentions`` answers from their bytes when it can (no text is decoded for them).
    paths = sorted(module_names)
    for path in paths:
        if mentions(path, (_CONNECT_NEEDLE,)):
            shapes[path] = _cached_shapes(sources, path, content(path), cache)
    looked_at = list(shapes)  # the first round's only needle is connect: exactly these files mention it
    while True:
        # A short word first: when it is absent, so is every longer word holding it (codemods.needles).
        words = tuple(sorted(needles, key=lambda word: (len(word), word)))
        for path in looked_at:
            if path in parsed or not mentions(path, words):
                continue
            module_name = module_names[path]
            if path not in shapes:
                shapes[path] = _cached_shapes(sources, path, content(path), cache)
            if not _may_be_a_helper(shapes[path], needles):
                continue  # looked at again if a later round adds a helper's name to the needles
            parsed.add(path)
            for function in _cached_returns(sources, path, content(path), module_name, cache):
                functions[function.name] = (path, function)
        grown = _helpers_among(functions, found)
        new_needles = {name.rpartition(".")[2] for name in grown} - needles
        if not grown and not new_needles:
            return sorted(found.values(), key=lambda helper: helper.name)
        needles |= new_needles
        looked_at = paths


def _access(
    sources: Mapping[str, str],
) -> tuple[Callable[[str, Collection[str]], bool], Callable[[str], str]]:
    """How :func:`find_helpers` asks ``sources`` whether a file mentions words (without decoding it, for
    a :class:`MentionIndex`) and what names a file's content in cache keys (the name
    :class:`ContentKeys` gives it, which needs no reading, else its text's hash)."""
    if isinstance(sources, MentionIndex):
        mentions = sources.mentions
    else:

        def mentions(path: str, words: Collection[str]) -> bool:
            return _text_mentions(sources, path, words)

    named = sources.content_key if isinstance(sources, ContentKeys) else None

    def content(path: str) -> str:
        """The name of ``path``'s content in the cache keys (a mentioned file always has one)."""
        return (named(path) if named is not None else None) or answer_key("text", sources[path])

    return mentions, content


def _cached_shapes(
    sources: Mapping[str, str], path: str, content: str, cache: AnswerCache
) -> list[list[list[str]]]:
    """:func:`helper_shapes` of one file, through the cache (keyed by ``content``, the name of its text)."""
    key = answer_key("helper-shapes", content)
    cached = cache.get("helper_shapes", key)
    if cached is None:
        cached = helper_shapes(sources[path])
        cache.put("helper_shapes", key, cached)
    return cast(list[list[list[str]]], cached)


def _cached_returns(
    sources: Mapping[str, str], path: str, content: str, module_name: str, cache: AnswerCache
) -> list[FunctionReturns]:
    """:func:`read_function_returns` of one file (LibCST), through the cache (keyed by ``content``)."""
    package = module_name if path.endswith("__init__.py") else module_name.rpartition(".")[0]
    key = answer_key("function-returns", content, module_name, package)
    cached = cache.get("function_returns", key)
    if cached is not None:
        return [FunctionReturns.from_json(raw) for raw in cached]
    module = parse_or_none(sources[path])
    returns: list[FunctionReturns] = []
    if module is not None:
        try:
            returns = read_function_returns(module, module_name, package)
        except (RecursionError, MemoryError):
            returns = []  # absurdly nested code is no connection helper; the run reports the file itself
    cache.put("function_returns", key, [function.to_json() for function in returns])
    return returns


def _may_be_a_helper(shapes: list[list[list[str]]], needles: set[str]) -> bool:
    """Whether one of a file's functions returns only calls named like ``needles`` (see helper_shapes)."""
    return any(function and all(not needles.isdisjoint(names) for names in function) for function in shapes)


def helper_shapes(source: str) -> list[list[list[str]]]:
    """For each function of ``source`` that may be a helper, the names each of its returned calls may end in.

    A necessary condition, with CPython's parser, for LibCST's :func:`read_function_returns` to find a
    helper: a helper returns nothing but ``None`` and calls (directly, or through a local name every
    assignment of which is a call or ``None``), and each call's qualified name ends in ``connect`` or in a
    helper's name. The name a call's qualified name ends in is the attribute for ``a.b.connect()``, and
    for a bare name the name itself or, when an import binds it (``from psycopg2 import connect as
    pg``), the imported name. A function is summarised as one list of such names per returned call; one
    that returns anything else is left out. A file CPython does not compile has no summary (the run
    reports it), and neither has absurdly nested code.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
        imported: dict[str, set[str]] = {}
        functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if alias.asname:
                        imported.setdefault(alias.asname, set()).add(alias.name.rpartition(".")[2])
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append(node)
        shapes: list[list[list[str]]] = []
        for function in functions:
            shape = _function_shape(function, imported)
            if shape:
                shapes.append(shape)
        return shapes
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []


def _function_shape(
    function: ast.FunctionDef | ast.AsyncFunctionDef, imported: Mapping[str, set[str]]
) -> list[list[str]] | None:
    """The names each returned call of ``function`` may end in; None when it returns something else."""
    returns: list[ast.expr | None] = []
    assigned: dict[str, list[ast.expr]] = {}
    pending: list[ast.AST] = list(function.body)
    while pending:  # the function's own body: nested functions, classes and lambdas are their own scopes
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Return):
            returns.append(node.value)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            assigned.setdefault(node.target.id, []).append(node.value)
        pending.extend(ast.iter_child_nodes(node))
    calls: list[list[str]] = []
    for value in returns:
        found = _returned_calls(value, assigned, imported, frozenset())
        if found is None:
            return None
        calls.extend(found)
    return calls or None


def _callee_endings(callee: ast.expr, imported: Mapping[str, set[str]]) -> list[str] | None:
    """What a callee's qualified name may end in; None for one LibCST gives no name (never a connect)."""
    if isinstance(callee, ast.Attribute):
        return [callee.attr]
    if isinstance(callee, ast.Name):
        return sorted({callee.id, *imported.get(callee.id, ())})
    return None


def _returned_calls(
    value: ast.expr | None,
    assigned: Mapping[str, list[ast.expr]],
    imported: Mapping[str, set[str]],
    seen: frozenset[str],
) -> list[list[str]] | None:
    """The callee names a returned ``value`` may come from ([] for None); None for anything else."""
    if value is None or (isinstance(value, ast.Constant) and value.value is None):
        return []
    if isinstance(value, ast.Call):
        names = _callee_endings(value.func, imported)
        return None if names is None else [names]
    if isinstance(value, ast.Name) and value.id in assigned and value.id not in seen:
        calls: list[list[str]] = []
        for inner in assigned[value.id]:
            found = _returned_calls(inner, assigned, imported, seen | {value.id})
            if found is None:
                return None
            calls.extend(found)
        return calls or None
    return None


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
