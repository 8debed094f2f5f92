"""Every remaining reference to a legacy helper, anywhere in a tree.

The cleanup (PS901) may delete a helper only when nothing refers to it any more; the runner computes this
list over the whole tree after the other rules ran, and PS901 checks the helper's own module again. The
list is stricter than "imports that are still used": deleting the helper turns even an unused import of it
into an ImportError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import libcst as cst
from libcst.helpers import get_absolute_module_from_package_for_import
from libcst.metadata import MetadataWrapper, PositionProvider, QualifiedNameProvider

from codemods.cst.imports.dunder_all import all_entry_ids
from codemods.cst.literals import literal_string
from codemods.cst.syntax import module_level_functions, parse_or_none
from codemods.legacy_helpers.discovery import AnswerCache, answer_key, prefilter_names, resolve_helper


class _ReferenceCollector(cst.CSTVisitor):
    """Every place in one file that still refers to a helper (see ``find_legacy_references``)."""

    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider)

    def __init__(self, path: str, module_name: str, package_name: str, helpers: Sequence[str]) -> None:
        super().__init__()
        self.path = path
        self.module_name = module_name
        self.package_name = package_name
        self.helpers = helpers
        self.short_names = {helper.rpartition(".")[2]: helper for helper in helpers}
        self.found: list[tuple[int, int, str]] = []
        self._definition_names: set[int] = set()
        self._all_strings: set[int] = set()
        self._star_helpers: list[str] = []

    def _add(self, node: cst.CSTNode, what: str) -> None:
        position = self.get_metadata(PositionProvider, node).start
        self.found.append((position.line, position.column + 1, what))

    def visit_Module(self, node: cst.Module) -> None:
        for function in module_level_functions(node):
            if f"{self.module_name}.{function.name.value}" in self.helpers:
                # The definition's own name is not a reference; its body is (recursion counts).
                self._definition_names.add(id(function.name))
                self._all_strings.update(all_entry_ids(node, function.name.value))

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        module = get_absolute_module_from_package_for_import(self.package_name or None, node)
        if module is None:
            return False
        if isinstance(node.names, cst.ImportStar):
            for helper in self.helpers:
                if helper.rpartition(".")[0] == module:
                    self._star_helpers.append(helper)
            return False
        for alias in node.names:
            if f"{module}.{alias.evaluated_name}" in self.helpers:
                self._add(alias, f"imports {module}.{alias.evaluated_name}")
        return False

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_Name(self, node: cst.Name) -> None:
        if id(node) in self._definition_names:
            return
        self._check_expression(node)
        if self._star_helpers and node.value in self.short_names:
            helper = self.short_names[node.value]
            if helper in self._star_helpers and not self.get_metadata(QualifiedNameProvider, node, set()):
                self._add(node, f"uses {node.value} (star import of {helper.rpartition('.')[0]})")

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._check_expression(node)

    def _check_expression(self, node: cst.BaseExpression) -> None:
        names = self.get_metadata(QualifiedNameProvider, node, set())
        helper, _ = resolve_helper(names, self.helpers, self.module_name, self.package_name)
        if helper is not None:
            code = cst.Module([]).code_for_node(node)
            self._add(node, f"refers to {helper} ({code})")

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        if id(node) in self._all_strings:
            return
        value = literal_string(node)
        if value is None:
            return
        helper = self.short_names.get(value) or (value if value in self.helpers else None)
        if helper is not None:
            self._add(node, f"mentions {helper} in a string ({value!r})")


def find_legacy_references(
    sources: Mapping[str, str],
    module_names: Mapping[str, str],
    helpers: Sequence[str],
    cache: AnswerCache | None = None,
) -> tuple[str, ...]:
    """``"path:line:col: what"`` for every reference to a helper outside its own definition.

    Stricter than "imports that are still used": *every* import of a helper is listed, because deleting
    the helper would turn even an unused import into an ImportError. A file that does not parse is
    listed too: nothing can be proven about it.
    """
    if not helpers:
        return ()
    prefilter = prefilter_names(helpers)
    references: list[str] = []
    for path in sorted(sources):
        text = sources[path]
        if not any(name in text for name in prefilter):
            continue
        module_name = module_names.get(path, "")
        key = answer_key("references", text, path, module_name, *helpers)
        found = _FOUND.get(key)
        if found is None:
            cached = cache.get("references", key) if cache is not None else None
            found = tuple(cached) if cached is not None else _references_in(path, text, module_name, helpers)
            if len(_FOUND) >= _FOUND_LIMIT:
                _FOUND.clear()
            _FOUND[key] = found
        if cache is not None:
            cache.put("references", key, list(found))
        references.extend(found)
    return tuple(references)


#: One file's references by their cache key (path, content, module, helpers): a run asks twice (the
#: cleanup's reference list and scan's helper summary), and each answer costs a LibCST parse and name
#: resolution; ``cache`` keeps them across runs (they depend on the file's content alone).
_FOUND: dict[str, tuple[str, ...]] = {}
_FOUND_LIMIT = 4096


def _references_in(path: str, text: str, module_name: str, helpers: Sequence[str]) -> tuple[str, ...]:
    module = parse_or_none(text)
    if module is None:
        return (f"{path}:1:1: does not parse; cannot prove it does not use the helper",)
    collector = _ReferenceCollector(path, module_name, _package_of(path, module_name), helpers)
    MetadataWrapper(module, unsafe_skip_copy=True).visit(collector)
    return tuple(f"{path}:{line}:{column}: {what}" for line, column, what in sorted(collector.found))


def _package_of(path: str, module_name: str) -> str:
    if path.endswith("__init__.py"):
        return module_name
    return module_name.rpartition(".")[0]
