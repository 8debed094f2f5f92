"""What each function of a module returns, as far as connection helpers are concerned.

A legacy helper is recognised by what it does, not by its name: it returns the result of a connect call
(``psycopg2.connect``, its pooled drop-in, or another helper). This module reads one module and says, for
every module- and class-level function, where its return values come from: ``None`` (a failure path:
``return``, ``return None``), a call (by the qualified names of its callee, made absolute), or something
else. :mod:`.discovery` then decides, over the whole tree, which functions are helpers (a function may
return another module's helper, so the decision needs every module's answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider, QualifiedNameProvider

from codemods.cst.literals import literal


def absolute_name(name: str, package: str | None) -> str | None:
    """``..db.get_conn`` seen from package ``app.api`` -> ``app.db.get_conn`` (None if unresolvable)."""
    if not name.startswith("."):
        return name
    level = len(name) - len(name.lstrip("."))
    rest = name[level:]
    if package is None:
        return None
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    joined = ".".join([*base, rest]) if rest else ".".join(base)
    return joined or None


#: One return value: None (``return`` / ``return None``), the callee names of a call, or "other".
ReturnSource = frozenset[str] | None | str
OTHER = "other"


@dataclass
class FunctionReturns:
    """Where one function's return values come from, and where it is defined."""

    name: str  # fully qualified: module.function or module.Class.method
    line: int
    sources: list[ReturnSource] = field(default_factory=list)

    def to_json(self) -> list[object]:
        """For the cache: None stays None, a call's names become a sorted list, "other" stays a string."""
        return [
            self.name,
            self.line,
            [sorted(source) if isinstance(source, frozenset) else source for source in self.sources],
        ]

    @classmethod
    def from_json(cls, raw: Sequence[object]) -> FunctionReturns:
        name, line, sources = raw
        assert isinstance(sources, list)
        return cls(
            str(name),
            int(cast(int, line)),
            [frozenset(source) if isinstance(source, list) else source for source in sources],
        )


class OwnBodyVisitor(cst.CSTVisitor):
    """Visits one function's own body: nested functions, classes and lambdas are other scopes, skipped."""

    def __init__(self, root: cst.FunctionDef) -> None:
        super().__init__()
        self.root = root

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return node is self.root

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False


class _BodyReader(OwnBodyVisitor):
    """Return statements and ``name = <value>`` assignments of one function body (nested scopes skipped)."""

    def __init__(self, root: cst.FunctionDef) -> None:
        super().__init__(root)
        self.returns: list[cst.BaseExpression | None] = []
        self.assigned: dict[str, list[cst.BaseExpression]] = {}

    def visit_Return(self, node: cst.Return) -> None:
        self.returns.append(node.value)

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if isinstance(target.target, cst.Name):
                self.assigned.setdefault(target.target.value, []).append(node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if isinstance(node.target, cst.Name) and node.value is not None:
            self.assigned.setdefault(node.target.value, []).append(node.value)


class _ModuleReader(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider)

    def __init__(self, module_name: str, package_name: str) -> None:
        super().__init__()
        self.module_name = module_name
        self.package_name = package_name
        self.functions: list[FunctionReturns] = []
        self._classes: list[str] = []
        self._depth = 0  # functions entered: a def inside a def is not a helper anyone can import

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        if self._depth:
            return False
        self._classes.append(node.name.value)
        return len(self._classes) == 1  # module-level classes only

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        if not self._depth and self._classes and self._classes[-1] == original_node.name.value:
            self._classes.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        if self._depth == 0:
            self.functions.append(self._read(node))
        self._depth += 1
        return False

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._depth -= 1

    def _read(self, function: cst.FunctionDef) -> FunctionReturns:
        reader = _BodyReader(function)
        function.visit(reader)
        name = ".".join([self.module_name, *self._classes, function.name.value])
        line = self.get_metadata(PositionProvider, function).start.line
        sources = [self._source(value, reader.assigned, set()) for value in reader.returns]
        return FunctionReturns(name, line, sources)

    def _source(
        self,
        value: cst.BaseExpression | None,
        assigned: dict[str, list[cst.BaseExpression]],
        seen: set[str],
    ) -> ReturnSource:
        if literal(value) is None:
            return None
        if isinstance(value, cst.Call):
            return frozenset(self._callee_names(value.func))
        if isinstance(value, cst.Name) and value.value in assigned and value.value not in seen:
            # `conn = connect(...); ...; return conn`: every value the name is given must be a call of
            # the same kind (or None); anything else makes the return "other".
            inner = [self._source(v, assigned, seen | {value.value}) for v in assigned[value.value]]
            calls = [source for source in inner if isinstance(source, frozenset)]
            if calls and all(source is None or isinstance(source, frozenset) for source in inner):
                return frozenset().union(*calls)
        return OTHER

    def _callee_names(self, func: cst.BaseExpression) -> Iterable[str]:
        for qualified in self.get_metadata(QualifiedNameProvider, func, set()):
            name = qualified.name
            if qualified.source.name == "LOCAL" and self.module_name:
                name = f"{self.module_name}.{name}"
            absolute = absolute_name(name, self.package_name)
            yield absolute if absolute is not None else name


def read_function_returns(module: cst.Module, module_name: str, package_name: str) -> list[FunctionReturns]:
    """Every module- and class-level function of ``module`` with the sources of its return values."""
    reader = _ModuleReader(module_name, package_name)
    MetadataWrapper(module, unsafe_skip_copy=True).visit(reader)
    return reader.functions
