"""Reading a module's ``__all__``.

Three analyses care about it: a name listed there is a re-export, so its import must survive pruning
(:mod:`~codemods.cst.imports.pruning`); the legacy helper's own entry is part of its definition, so it is
not a "remaining reference" (:mod:`~codemods.legacy_helpers.references`) and goes with the helper (PS901).
They all look at the same statements, found here.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from codemods.cst.literals import literal_string

AllAssignment = cst.Assign | cst.AugAssign | cst.AnnAssign


def all_assignments(module: cst.Module) -> Iterator[AllAssignment]:
    """Module-level ``__all__ = ...``, ``__all__ += ...`` and ``__all__: ... = ...`` statements."""
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, (cst.Assign, cst.AugAssign, cst.AnnAssign)) and _assigns_all(small):
                yield small


def _assigns_all(node: AllAssignment) -> bool:
    targets = [target.target for target in node.targets] if isinstance(node, cst.Assign) else [node.target]
    return any(isinstance(target, cst.Name) and target.value == "__all__" for target in targets)


def _listed_strings(node: AllAssignment) -> Iterator[cst.SimpleString]:
    """The string elements of a literal list/tuple assigned to ``__all__``."""
    if isinstance(node.value, (cst.List, cst.Tuple)):
        for element in node.value.elements:
            if isinstance(element.value, cst.SimpleString):
                yield element.value


def exported_names(module: cst.Module) -> set[str]:
    """Strings in the module's ``__all__`` (re-exported names must keep their imports)."""
    names: set[str] = set()
    for assignment in all_assignments(module):
        for string in _listed_strings(assignment):
            text = literal_string(string)
            if text is not None:
                names.add(text)
    return names


def all_entry_ids(module: cst.Module, name: str) -> set[int]:
    """ids of the ``"name"`` strings in the module's ``__all__``."""
    return {
        id(string)
        for assignment in all_assignments(module)
        for string in _listed_strings(assignment)
        if literal_string(string) == name
    }
