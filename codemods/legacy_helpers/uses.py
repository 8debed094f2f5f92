"""Every call of, and other reference to, a legacy helper in the file a rule is transforming.

PS101 and PS102 start from the same list (so a site is never seen by one and missed by the other): each
use says which helper it resolves to, whether it is a call, whether the name may also be something else,
and whether it sits inside the helper's own definition (recursion, which goes with the helper).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import QualifiedName

from codemods.legacy_helpers.discovery import resolve_helper

#: The names a method's own class or instance goes by, by convention: ``self.helper()`` in a class that
#: defines the helper method is a use of it (or of a subclass's override).
_RECEIVERS = frozenset({"self", "cls"})


@dataclass(frozen=True)
class HelperUse:
    """One expression in the file that resolves to a helper."""

    node: cst.BaseExpression  # the Call for calls, else the Name/Attribute
    helper: str
    is_call: bool
    ambiguous: bool
    in_definition: bool  # inside the helper's own ``def`` (recursion): never rewritten
    through_receiver: bool = False  # ``self.helper()``: a method helper, which a subclass may override


class _HelperUseCollector(cst.CSTVisitor):
    def __init__(
        self,
        names_of: Callable[[cst.CSTNode], Iterable[QualifiedName]],
        helpers: Sequence[str],
        module_name: str | None,
        package_name: str | None,
    ) -> None:
        super().__init__()
        self.names_of = names_of
        self.helpers = helpers
        self.module_name = module_name
        self.package_name = package_name
        self.uses: list[HelperUse] = []
        self._skip: set[int] = set()
        self._definition_depth = 0
        self._classes: list[str] = []  # the enclosing class names, outermost first

    def _resolve(self, node: cst.BaseExpression) -> tuple[str | None, bool]:
        return resolve_helper(self.names_of(node), self.helpers, self.module_name, self.package_name)

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def _in_class(self, name: str) -> str:
        """The qualified name ``name`` has when defined here (a method's includes its classes)."""
        return ".".join([self.module_name or "", *self._classes, name])

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._classes.append(node.name.value)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self._classes.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._skip.add(id(node.name))
        if self.module_name and self._in_class(node.name.value) in self.helpers:
            self._definition_depth += 1
        self._classes.append("<locals>")  # a class defined in a function is not the module's

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._classes.pop()
        if self.module_name and self._in_class(original_node.name.value) in self.helpers:
            self._definition_depth -= 1

    def visit_Call(self, node: cst.Call) -> None:
        helper, ambiguous = self._resolve(node.func)
        if helper is not None:
            self._skip.add(id(node.func))
            self.uses.append(HelperUse(node, helper, True, ambiguous, self._definition_depth > 0))
            return
        method = self._method_helper(node.func)
        if method is not None:
            # Which method runs depends on the object's class: never rewritten, always reported.
            self._skip.add(id(node.func))
            self.uses.append(HelperUse(node, method, True, True, self._definition_depth > 0, True))

    def _method_helper(self, func: cst.BaseExpression) -> str | None:
        """``self.open_connection`` inside a method of the class that defines that helper method."""
        if not (
            self.module_name
            and isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value in _RECEIVERS
        ):
            return None
        # The receiver belongs to the innermost class around the method being visited (the last
        # "<locals>" is that method's own frame).
        classes = self._classes[:-1] if self._classes and self._classes[-1] == "<locals>" else self._classes
        if not classes or classes[-1] == "<locals>":
            return None
        name = ".".join([self.module_name, *classes, func.attr.value])
        return name if name in self.helpers else None

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if id(node) in self._skip:
            return True
        helper, ambiguous = self._resolve(node)
        if helper is not None:
            self.uses.append(HelperUse(node, helper, False, ambiguous, self._definition_depth > 0))
            return False
        return True

    def visit_Name(self, node: cst.Name) -> None:
        if id(node) in self._skip:
            return
        helper, ambiguous = self._resolve(node)
        if helper is not None:
            self.uses.append(HelperUse(node, helper, False, ambiguous, self._definition_depth > 0))


def collect_helper_uses(
    module: cst.Module,
    names_of: Callable[[cst.CSTNode], Iterable[QualifiedName]],
    helpers: Sequence[str],
    module_name: str | None,
    package_name: str | None,
) -> list[HelperUse]:
    """Every call of and other reference to a helper in ``module`` (import statements excluded)."""
    collector = _HelperUseCollector(names_of, helpers, module_name, package_name)
    module.visit(collector)
    return collector.uses
