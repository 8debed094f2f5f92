"""The first pass: the standard library's ``ast`` (CPython's C parser) over every file that may matter.

LibCST parses an order of magnitude slower than ``ast`` and its metadata (scopes, qualified names) costs
more again, so the engine asks ``ast`` first which files hold a call whose callee could be one of the
rules' declared targets (``TARGETS`` of a redirect rule: ``sqlite3.connect``, ``urllib.request.urlopen``,
...), and runs LibCST only on those. Resolution here is deliberately over-inclusive: any import anywhere in
the file (module level, function, ``try`` block) binds the name, so a file the rule must see is never
skipped; LibCST's scope analysis then decides precisely.

The same pass gives what only the whole project can answer: what a module-level name of a project module
is bound to (``pkg.utils.sqlite3`` is the module ``sqlite3``, including the ``try: import pysqlite3 as
sqlite3 except ImportError: import sqlite3`` choice), so ``from pkg.utils import sqlite3`` resolves
through the project's own code. A call that could be a target but cannot be resolved is a candidate too,
with a reason: ``dynamic-callee`` (``self.m.sqlite3.connect``, ``getattr(urllib.request, name)``) or
``ambiguous-module`` (a name whose module cannot be known from the project's code).
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from codemods.rules.base import through_module_aliases

__all__ = [
    "MODULE_CHOICES",
    "Candidate",
    "FileFacts",
    "TargetSet",
    "binding_resolver",
    "parse_text",
    "patched_imports",
    "project_module_aliases",
    "scan_source",
]

CandidateKind = Literal["resolved", "dynamic-callee", "ambiguous-module"]

#: A module a project may pick instead of a standard one under the same name; a binding that can be
#: either (the ``try``/``except ImportError`` choice) counts as the standard module.
MODULE_CHOICES: Mapping[str, str] = {"pysqlite3": "sqlite3", "pysqlite3.dbapi2": "sqlite3.dbapi2"}

_UNKNOWN = "<unknown>"  # a binding that is not an import (assignment, def, parameter, loop variable...)


@dataclass(frozen=True)
class TargetSet:
    """What the first pass looks for: fully qualified callee names, and the modules that hold them."""

    targets: frozenset[str]

    @property
    def modules(self) -> frozenset[str]:
        return frozenset(target.rpartition(".")[0] for target in self.targets)

    def suffix_match(self, dotted: str) -> str | None:
        """The target ending in ``dotted`` at a module boundary (``sqlite3.connect``, ``request.urlopen``).

        A tail that starts at a class (``Connection.connect``: capitalized, as PEP 8 and every target's
        library name classes) says nothing about whose class it is, so it matches nothing.
        """
        if dotted[:1].isupper():
            return None
        for target in sorted(self.targets):
            if "." in dotted and (target == dotted or target.endswith("." + dotted)):
                return target
        return None


@dataclass(frozen=True)
class Candidate:
    """One expression that may be a target call; positions are 1-based lines and character columns."""

    target: str
    line: int
    column: int
    kind: CandidateKind
    text: str  # the callee as written, for the report


@dataclass
class FileFacts:
    """What the first pass learned about one file."""

    candidates: list[Candidate] = field(default_factory=list)
    #: Module-level names bound by imports to modules or module attributes (name -> possible targets).
    bindings: dict[str, list[str]] = field(default_factory=dict)
    #: Everything the file imports, at any depth (absolute dotted names): which project facts matter here.
    imports: list[str] = field(default_factory=list)
    #: Dotted paths a test may patch through, which may name another module's import (see
    #: :func:`patched_imports`): string literals spelling one (``mock.patch("app.db.psycopg2.connect")``,
    #: ``monkeypatch.setattr("...")``) and the object given to ``patch.object``/``setattr``, resolved
    #: (``mock.patch.object(app.db.psycopg2, "connect")``: ``app.db.psycopg2.*``).
    patch_paths: list[str] = field(default_factory=list)
    error: str | None = None  # the parser's message when ``ast`` rejects the file

    @property
    def needs_rewrite_pass(self) -> bool:
        """A resolved candidate: the rule must look at the file (LibCST) to rewrite or report it."""
        return any(candidate.kind == "resolved" for candidate in self.candidates)

    def to_json(self) -> dict[str, object]:
        return {
            "candidates": [[c.target, c.line, c.column, c.kind, c.text] for c in self.candidates],
            "bindings": self.bindings,
            "imports": self.imports,
            "patch_paths": self.patch_paths,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> FileFacts:
        candidates = raw["candidates"]
        bindings = raw["bindings"]
        imports = raw["imports"]
        patch_paths = raw["patch_paths"]
        error = raw["error"]
        assert isinstance(candidates, list)
        assert isinstance(bindings, dict)
        assert isinstance(imports, list)
        assert isinstance(patch_paths, list)
        return cls(
            candidates=[Candidate(t, int(li), int(co), k, x) for t, li, co, k, x in candidates],
            bindings={str(k): [str(v) for v in vs] for k, vs in bindings.items()},
            imports=[str(name) for name in imports],
            patch_paths=[str(text) for text in patch_paths],
            error=None if error is None else str(error),
        )

    def relevant_aliases(self, aliases: Mapping[str, str]) -> dict[str, str]:
        """The project-wide aliases this file's imports can reach (the only ones its answer depends on)."""
        imported = set(self.imports)
        return {
            key: value
            for key, value in sorted(aliases.items())
            if any(
                key == name or key.startswith(name + ".") or name.startswith(key + ".") for name in imported
            )
        }


def _absolute(module: str | None, level: int, package: str) -> str | None:
    if level == 0:
        return module
    if not package:
        return None  # a relative import in a top-level module: it fails at run time, so it is not a module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base) or None


class _Bindings(ast.NodeVisitor):
    """Every name the file binds, anywhere: imports record what they bind, anything else is unknown."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.names: dict[str, set[str]] = {}
        self.module_level: dict[str, set[str]] = {}
        self.star_modules: list[str] = []
        self._depth = 0  # function/class nesting: module-level bindings are what other modules import

    def _bind(self, name: str, value: str) -> None:
        self.names.setdefault(name, set()).add(value)
        if self._depth == 0:
            self.module_level.setdefault(name, set()).add(value)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self._bind(alias.asname, alias.name)
            else:
                top = alias.name.split(".")[0]
                self._bind(top, top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = _absolute(node.module, node.level, self.package)
        for alias in node.names:
            if alias.name == "*":
                self.star_modules.append(module or _UNKNOWN)
                continue
            value = f"{module}.{alias.name}" if module else _UNKNOWN
            self._bind(alias.asname or alias.name, value)

    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            self._bind(node.id, _UNKNOWN)

    def _scoped(self, node: ast.AST, name: str | None) -> None:
        if name is not None:
            self._bind(name, _UNKNOWN)
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scoped(node, node.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scoped(node, None)

    def visit_arg(self, node: ast.arg) -> None:
        self._bind(node.arg, _UNKNOWN)


def _dotted(node: ast.expr) -> tuple[ast.expr, list[str]]:
    """``a.b.c`` -> (the innermost expression, ["b", "c"]): the base and the attribute names after it."""
    attributes: list[str] = []
    while isinstance(node, ast.Attribute):
        attributes.append(node.attr)
        node = node.value
    attributes.reverse()
    return node, attributes


def _normalise(values: set[str]) -> set[str]:
    """A choice between a module and its stand-in (``pysqlite3`` or ``sqlite3``) is the standard module."""
    if len(values) < 2:
        return values
    return {_swap_choice(value) for value in values}


def _swap_choice(value: str) -> str:
    for choice, standard in MODULE_CHOICES.items():
        if value == choice or value.startswith(choice + "."):
            return standard + value[len(choice) :]
    return value


class _Finder:
    """Classifies every call (and every other reference) whose callee could be a target."""

    def __init__(
        self,
        bindings: _Bindings,
        targets: TargetSet,
        aliases: Mapping[str, str],
        line_offsets: _Columns,
        project_modules: frozenset[str] = frozenset(),
    ) -> None:
        self.project_modules = project_modules
        self.bindings = bindings
        self.targets = targets
        self.aliases = aliases
        self.columns = line_offsets
        self.found: dict[tuple[int, int], Candidate] = {}

    def resolve(self, name: str) -> set[str]:
        """What the dotted ``name`` (starting at a bound name) may be, after project aliases."""
        head, _, rest = name.partition(".")
        values = _normalise(self.bindings.names.get(head, set()))
        if not values and self.bindings.star_modules:
            values = {_UNKNOWN}
        resolved: set[str] = set()
        for value in values:
            if value == _UNKNOWN:
                resolved.add(_UNKNOWN)
                continue
            full = f"{value}.{rest}" if rest else value
            resolved.add(through_module_aliases(full, self.aliases))
        return resolved

    def add(self, node: ast.expr, target: str, kind: CandidateKind, text: str) -> None:
        line, column = node.lineno, self.columns.column(node.lineno, node.col_offset)
        previous = self.found.get((line, column))
        if previous is None or (previous.kind != "resolved" and kind == "resolved"):
            self.found[(line, column)] = Candidate(target, line, column, kind, text)

    def visit_reference(self, node: ast.expr, call: ast.Call | None) -> None:
        """``node`` is a Name/Attribute chain (the callee when ``call`` is given)."""
        base, attributes = _dotted(node)
        where: ast.expr = call if call is not None else node
        if isinstance(base, ast.Name):
            dotted = ".".join([base.id, *attributes])
            resolved = self.resolve(dotted)
            hits = resolved & self.targets.targets
            if hits:
                self.add(where, sorted(hits)[0], "resolved", dotted)
                return
            if call is None:
                return
            target = self._unknowable(resolved, dotted)
            if target is not None:
                # ``sqlite3.connect`` whose ``sqlite3`` the file and the project do not pin down.
                self.add(where, target, "ambiguous-module", dotted)
                return
            self._dynamic_tail(where, attributes, dotted)
        elif call is not None and attributes:
            self._dynamic_tail(
                where, attributes, ast.unparse(node) if len(attributes) < 8 else attributes[-1]
            )

    def _unknowable(self, resolved: set[str], written: str) -> str | None:
        """The target a name may be when it is unbound, bound to something unknown, or imported from a
        module the project does not resolve (``from pkg.compat import sqlite3`` leaves
        ``pkg.compat.sqlite3.connect``: it may well be the module; ``import sqlite4 as sqlite3`` is known
        not to be).
        """
        if not resolved or _UNKNOWN in resolved:
            return self.targets.suffix_match(written)
        for value in sorted(resolved):
            parts = value.split(".")
            if any(".".join(parts[:end]) in self.project_modules for end in range(1, len(parts))):
                continue  # the project's own module of that name (``from . import sqlite3``): known
            for start in range(1, len(parts) - 1):
                target = self.targets.suffix_match(".".join(parts[start:]))
                if target is not None:
                    return target
        return None

    def _dynamic_tail(self, where: ast.expr, attributes: list[str], text: str) -> None:
        """``<anything>.sqlite3.connect``: a module reached through an object; it cannot be resolved."""
        for start in range(len(attributes) - 1):
            target = self.targets.suffix_match(".".join(attributes[start:]))
            if target is not None:
                self.add(where, target, "dynamic-callee", text)
                return

    def visit_getattr(self, call: ast.Call) -> None:
        """``getattr(module, "connect")`` or ``getattr(module, name)`` on a module holding a target."""
        if len(call.args) < 2 or not isinstance(call.args[0], (ast.Name, ast.Attribute)):
            return
        base, attributes = _dotted(call.args[0])
        if not isinstance(base, ast.Name):
            return
        for module in self.resolve(".".join([base.id, *attributes])):
            attribute = call.args[1]
            for target in sorted(self.targets.targets):
                if target.rpartition(".")[0] != module:
                    continue
                literal = attribute.value if isinstance(attribute, ast.Constant) else None
                if literal is None or literal == target.rpartition(".")[2]:
                    self.add(call, target, "dynamic-callee", f"getattr({ast.unparse(call.args[0])}, ...)")
                    return


class _Columns:
    """``ast`` columns are UTF-8 byte offsets; sites use character columns (1-based), like LibCST's."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._lines: list[str] | None = None

    def column(self, line: int, byte_offset: int) -> int:
        if self.text.isascii():
            return byte_offset + 1
        if self._lines is None:
            self._lines = self.text.splitlines()
        source = self._lines[line - 1] if line - 1 < len(self._lines) else ""
        return len(source.encode("utf-8")[:byte_offset].decode("utf-8", "replace")) + 1


def binding_resolver(
    tree: ast.Module, text: str, package: str, aliases: Mapping[str, str]
) -> tuple[Callable[[str], set[str]], Callable[[int, int], int]]:
    """What the first pass knows about names, for another pass over the same tree: a resolver for
    dotted names (as :func:`scan_source` resolves them) and the byte-offset-to-column mapping."""
    bindings = _Bindings(package)
    bindings.visit(tree)
    finder = _Finder(bindings, TargetSet(frozenset()), aliases, _Columns(text))
    return finder.resolve, finder.columns.column


def parse_text(text: str) -> ast.Module | str:
    """CPython's parse of ``text``, or the parser's message; never raises for bad input."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes in the user's code are not our business
            return ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"


def scan_source(
    text: str,
    targets: TargetSet,
    *,
    package: str = "",
    aliases: Mapping[str, str] | None = None,
    project_modules: frozenset[str] = frozenset(),
    parsed: ast.Module | str | None = None,
) -> FileFacts:
    """The first pass over one decoded file; never raises for bad input (``error`` says why).

    ``parsed`` is :func:`parse_text`'s answer for ``text`` when the caller has it already.
    """
    tree = parse_text(text) if parsed is None else parsed
    if isinstance(tree, str):
        return FileFacts(error=tree)
    bindings = _Bindings(package)
    dotted: set[str] = set()
    try:
        bindings.visit(tree)
        finder = _Finder(bindings, targets, aliases or {}, _Columns(text), project_modules)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Name) and node.func.id == "getattr":
                    finder.visit_getattr(node)
                if len(dotted) < _PATCH_PATHS_MAX:
                    dotted.update(_patched_object_paths(node, finder.resolve))
                if isinstance(node.func, (ast.Name, ast.Attribute)):
                    finder.visit_reference(node.func, node)
            elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load):
                finder.visit_reference(node, None)
            elif (
                isinstance(node, ast.Constant)
                and type(node.value) is str
                and len(dotted) < _PATCH_PATHS_MAX
                and _DOTTED_PATH.fullmatch(node.value)
            ):
                dotted.add(node.value)
    except RecursionError as exc:
        return FileFacts(error=f"RecursionError: {exc}")
    module_level = {name: sorted(values) for name, values in bindings.module_level.items()}
    candidates = sorted(finder.found.values(), key=lambda c: (c.line, c.column))
    imports = sorted({value for values in bindings.names.values() for value in values} - {_UNKNOWN})
    return FileFacts(
        candidates=candidates, bindings=module_level, imports=imports, patch_paths=sorted(dotted)
    )


def _patched_object_paths(call: ast.Call, resolve: Callable[[str], set[str]]) -> set[str]:
    """``mock.patch.object(app.db.psycopg2, "connect")``, ``monkeypatch.setattr(db.psycopg2, ...)``: the
    path the patched object is reached by, resolved through the file's imports, as a string target
    would spell it (``app.db.psycopg2.*``)."""
    root, words = _dotted(call.func)
    if isinstance(root, ast.Name):
        words = [root.id, *words]
    patching = words[-1:] == ["setattr"] or ("patch" in words and words[-1] in ("object", "multiple"))
    if not patching:
        return set()
    if not call.args or not isinstance(call.args[0], ast.Attribute):
        return set()
    base, attributes = _dotted(call.args[0])
    if not isinstance(base, ast.Name):
        return set()
    resolved = resolve(".".join([base.id, *attributes]))
    # ``.*``: some attribute of that object, as a string target would name it after the object's path
    return {f"{path}.*" for path in resolved if path != _UNKNOWN and _DOTTED_PATH.fullmatch(path)}


# A dotted path of three names or more, the shape of ``mock.patch("app.db.psycopg2.connect")``'s target.
_DOTTED_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*){2,}")
_PATCH_PATHS_MAX = 512  # per file: a generated file full of dotted strings is not a test suite


def patched_imports(
    facts: Mapping[str, FileFacts], project_modules: Iterable[str]
) -> dict[str, frozenset[str]]:
    """Project module -> the names in it that a patch path somewhere in the tree reaches into
    (:attr:`FileFacts.patch_paths`): for ``"app.db.psycopg2.connect"``, ``app.db`` -> ``psycopg2``. A
    test patching that path needs the module to keep binding the name, even once a rewrite leaves the
    import unused."""
    modules = set(project_modules)
    found: dict[str, set[str]] = {}
    for file_facts in facts.values():
        for text in file_facts.patch_paths:
            parts = text.split(".")
            for end in range(1, len(parts) - 1):
                module = ".".join(parts[:end])
                if module in modules:
                    found.setdefault(module, set()).add(parts[end])
    return {module: frozenset(names) for module, names in found.items()}


def project_module_aliases(
    facts: Mapping[str, FileFacts], module_names: Mapping[str, str], interesting: Iterable[str]
) -> dict[str, str]:
    """``{"pkg.utils.sqlite3": "sqlite3"}``: names of project modules that are one of ``interesting``.

    Only a binding the project's code shows unambiguously (every import of the name, at module level,
    is that module, or the ``pysqlite3``/``sqlite3`` choice) becomes an alias; one level of re-export
    through another project module is followed too (``from pkg.utils import sqlite3`` in ``pkg/db.py``).
    """
    wanted = set(interesting)
    raw: dict[str, set[str]] = {}
    for path, file_facts in facts.items():
        module = module_names.get(path)
        if not module:
            continue
        for name, values in file_facts.bindings.items():
            raw[f"{module}.{name}"] = _normalise(set(values))
    aliases: dict[str, str] = {}
    for _round in range(3):  # re-exports of re-exports, a few levels deep
        for qualified, choices in raw.items():
            resolved = {through_module_aliases(value, aliases) for value in choices}
            if len(resolved) == 1 and _UNKNOWN not in resolved:
                (only,) = resolved
                if only in wanted and qualified != only:
                    aliases[qualified] = only
    return aliases
