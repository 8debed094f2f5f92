"""Adding an import where isort (profile black) and ruff's ``I001`` would have put it.

LibCST's ``AddImportsVisitor`` appends new imports after the last import at the top of the module: after
the first-party group, unsorted, so a file that was ``ruff check --select I`` clean fails after migration.
:class:`GroupedAddImports` decides *what* to add exactly as LibCST does (it is a subclass, and uses the
same ``context.scratch`` requests) and only changes *where*: each new statement goes into its section
(future, standard library, third party, first party, local), at its sorted place (``import x`` before
``from x import y``, then by module name, case-insensitively), and a section that did not exist yet
becomes a group of its own, with the blank lines between groups kept.

A module is first party when the project has a top-level module or package of that name
(``first_party``: what ruff's ``src = [".", "src"]`` and isort's ``src_paths`` find); ``db_utils`` is
third party everywhere poolshift migrates (a project's own ``db_utils`` is refused as shadowing the shim).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Collection, Sequence

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor

__all__ = ["GroupedAddImports", "section_of"]

FUTURE, STDLIB, THIRD_PARTY, FIRST_PARTY, LOCAL = range(5)
Statement = cst.SimpleStatementLine | cst.BaseCompoundStatement


def section_of(module: str, relative: int, first_party: Collection[str]) -> int:
    """isort's section of an imported module (by its top-level name)."""
    if relative:
        return LOCAL
    top = module.partition(".")[0]
    if top == "__future__":
        return FUTURE
    if top in sys.stdlib_module_names:
        return STDLIB
    return FIRST_PARTY if top in first_party else THIRD_PARTY


def _is_import_line(statement: cst.BaseStatement) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and all(
        isinstance(small, (cst.Import, cst.ImportFrom)) for small in statement.body
    )


def _is_docstring(statement: cst.BaseStatement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _sort_key(statement: cst.SimpleStatementLine) -> tuple[bool, str]:
    """``import x`` lines before ``from x import y`` lines, then by module, as isort's profile black."""
    small = statement.body[0]
    if isinstance(small, cst.Import):
        return False, cst.Module([]).code_for_node(small.names[0].name).lower()
    assert isinstance(small, cst.ImportFrom)
    dots = "." * len(small.relative)
    module = cst.Module([]).code_for_node(small.module) if small.module is not None else ""
    return True, (dots + module).lower()


def _member_key(name: str) -> tuple[int, str]:
    """isort's ``order_by_type``: CONSTANTS, then Classes, then functions and variables."""
    if name.isupper() and len(name) > 1:
        return 0, name.lower()
    return (1, name.lower()) if name[:1].isupper() else (2, name.lower())


def _split_leading(lines: Sequence[cst.EmptyLine]) -> tuple[list[cst.EmptyLine], list[cst.EmptyLine]]:
    """(the blank lines before the first comment, the rest): comments stay with the import below them."""
    for index, line in enumerate(lines):
        if line.comment is not None:
            return list(lines[:index]), list(lines[index:])
    return list(lines), []


class GroupedAddImports(AddImportsVisitor):
    """``AddImportsVisitor`` with isort's placement (see the module docstring)."""

    def __init__(self, context: CodemodContext, first_party: Collection[str] = ()) -> None:
        super().__init__(context)
        self.first_party = frozenset(first_party)

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom) -> cst.ImportFrom:
        merged = super().leave_ImportFrom(original_node, updated_node)
        if merged is updated_node or isinstance(merged.names, cst.ImportStar) or merged.lpar is not None:
            return merged
        if any(not isinstance(alias.name, cst.Name) for alias in merged.names):
            return merged
        ordered = sorted(
            merged.names, key=lambda alias: _member_key(cst.ensure_type(alias.name, cst.Name).value)
        )
        last = len(ordered) - 1
        names = [
            alias.with_changes(
                comma=cst.MaybeSentinel.DEFAULT
                if i == last
                else cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
            )
            for i, alias in enumerate(ordered)
        ]
        return merged.with_changes(names=names)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        new = self._new_statements(updated_node)
        if not new:
            return updated_node
        body: list[Statement] = list(updated_node.body)
        start, end = import_block(body)
        gap = docstring_gap(body)
        for statement in new:
            end = insert_import(body, start, end, statement, self.first_party, docstring_gap=gap)
        separate_block(body, end)
        return updated_node.with_changes(body=body)

    def _new_statements(self, module: cst.Module) -> list[cst.SimpleStatementLine]:
        """The statements LibCST's visitor would append (what is still missing after merging)."""
        lines = [f"import {name}" for name in sorted(self.module_imports)]
        lines += [f"import {name} as {alias}" for name, alias in sorted(self.module_aliases.items())]
        members: dict[str, list[str]] = defaultdict(list)
        for name, aliases in self.alias_mapping.items():
            members[name] += [f"{obj} as {alias}" for obj, alias in aliases]
        for name, objects in self.module_mapping.items():
            members[name] += list(objects)
        for name, texts in sorted(members.items()):
            ordered = sorted(texts, key=lambda text: _member_key(text.split(" ")[0]))
            lines.append(f"from {name} import {', '.join(ordered)}")
        config = module.config_for_parsing
        return [
            cst.ensure_type(cst.parse_statement(line, config=config), cst.SimpleStatementLine)
            for line in lines
        ]


def _statement_section(statement: cst.SimpleStatementLine, first_party: Collection[str]) -> int:
    small = statement.body[0]
    if isinstance(small, cst.Import):
        return section_of(_code(small.names[0].name), 0, first_party)
    assert isinstance(small, cst.ImportFrom)
    module = _code(small.module) if small.module is not None else ""
    return section_of(module, len(small.relative), first_party)


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _text(statement: cst.BaseStatement) -> str:
    """A statement's code without the blank lines and comments above it (moving it changes those)."""
    return _code(statement.with_changes(leading_lines=()))


def import_block(body: Sequence[cst.BaseStatement]) -> tuple[int, int]:
    """``(start, end)`` of the module's top import block: after a docstring, contiguous import lines."""
    start = 1 if body and _is_docstring(body[0]) else 0
    end = start
    while end < len(body) and _is_import_line(body[end]):
        end += 1
    return start, end


def insert_import(
    body: list[Statement],
    start: int,
    end: int,
    new: cst.SimpleStatementLine,
    first_party: Collection[str],
    *,
    docstring_gap: bool = False,
) -> int:
    """Put ``new`` into the block ``body[start:end]`` where isort would; returns the block's new end.

    ``docstring_gap``: the module's code was set apart from its docstring (see :func:`docstring_gap`).
    """
    section, key = _statement_section(new, first_party), _sort_key(new)
    block = [cst.ensure_type(statement, cst.SimpleStatementLine) for statement in body[start:end]]
    same = [i for i, statement in enumerate(block) if _statement_section(statement, first_party) == section]
    if same:
        after = [i for i in same if _sort_key(block[i]) > key]
        if after:
            return _insert_before(body, start + after[0], new, end, new_group=False)
        body.insert(start + same[-1] + 1, new)
        return end + 1
    later = [i for i, statement in enumerate(block) if _statement_section(statement, first_party) > section]
    if later:
        return _insert_before(body, start + later[0], new, end, new_group=True)
    if end > start:  # a new last group
        body.insert(end, new.with_changes(leading_lines=[cst.EmptyLine(indent=False), *new.leading_lines]))
        return end + 1
    if start > 0 and docstring_gap and not new.leading_lines:
        new = new.with_changes(leading_lines=[cst.EmptyLine()])
    body.insert(end, new)  # the module's first import
    return end + 1


def docstring_gap(body: Sequence[cst.BaseStatement]) -> bool:
    """Whether the module's code is set apart from its docstring by a blank line (ruff format's layout).

    A module's first import then keeps that blank line; without one (a comment right below the
    docstring) it goes right below the docstring, as the user wrote the rest.
    """
    if len(body) < 2 or not _is_docstring(body[0]):
        return False
    following = body[1]
    if not isinstance(following, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
        return False
    lines = following.leading_lines
    return bool(lines) and lines[0].comment is None


def separate_block(body: list[Statement], end: int) -> None:
    """A blank line between the import block and what follows (a comment there belongs to the code)."""
    if end < len(body):
        lines = body[end].leading_lines
        if not lines or lines[0].comment is not None:
            body[end] = body[end].with_changes(leading_lines=[cst.EmptyLine(), *lines])


def _insert_before(
    body: list[Statement], index: int, new: cst.SimpleStatementLine, end: int, *, new_group: bool
) -> int:
    """Insert at ``index``: ``new`` takes the blank lines above the statement there (the group break).

    ``new`` keeps its own comment lines (a moved import keeps the comments that were above it).
    """
    following = body[index]
    blanks, rest = _split_leading(following.leading_lines)
    if new_group:
        rest = [cst.EmptyLine(indent=False), *rest]
    body[index] = following.with_changes(leading_lines=rest)
    body.insert(index, new.with_changes(leading_lines=[*blanks, *new.leading_lines]))
    return end + 1


def _remove(body: list[Statement], index: int, start: int, end: int) -> tuple[cst.SimpleStatementLine, int]:
    """Take the line at ``index`` out of the block; the next line inherits its group break.

    The blank lines above the block's first line separate the block from what precedes it: when that
    line goes, the next one takes them instead of its own group break.
    """
    line = cst.ensure_type(body.pop(index), cst.SimpleStatementLine)
    blanks, comments = _split_leading(line.leading_lines)
    if index < end - 1:
        following_blanks, rest = _split_leading(body[index].leading_lines)
        if index == start or (blanks and not following_blanks):
            body[index] = body[index].with_changes(leading_lines=[*blanks, *rest])
    return line.with_changes(leading_lines=comments), end - 1


def _keep_first_line(before: cst.Module, body: list[Statement]) -> bool:
    """A removed first import must not leave the group break it had below it at the top of the file."""
    if not body or not before.body:
        return False
    allowed = len(_split_leading(before.body[0].leading_lines)[0])
    blanks, rest = _split_leading(body[0].leading_lines)
    if len(blanks) <= allowed:
        return False
    body[0] = body[0].with_changes(leading_lines=[*blanks[:allowed], *rest])
    return True


def _imports_only(statement: cst.SimpleStatementLine, package: str) -> bool:
    for small in statement.body:
        if isinstance(small, cst.Import):
            names = [_code(alias.name) for alias in small.names]
        else:
            assert isinstance(small, cst.ImportFrom)
            names = [_code(small.module)] if small.module is not None and not small.relative else [""]
        if not all(name == package or name.startswith(package + ".") for name in names):
            return False
    return True


def place_changed_imports(
    before: cst.Module, after: cst.Module, first_party: Collection[str], package: str = "db_utils"
) -> cst.Module:
    """Move the top-block imports of ``package`` that a rule wrote or changed into isort's place.

    A rule that retargets ``from urllib.request import urlopen`` in place (to keep its comments) leaves
    ``from db_utils.http import urlopen`` among the standard library imports. Only lines that were not in
    the file before move, so a user's own layout of imports poolshift did not touch is never changed.
    """
    old = {_text(line) for line in before.body[slice(*import_block(before.body))]}
    body: list[Statement] = list(after.body)
    trimmed = _keep_first_line(before, body)
    start, end = import_block(body)
    changed = [
        index
        for index in range(start, end)
        if _text(body[index]) not in old
        and _imports_only(cst.ensure_type(body[index], cst.SimpleStatementLine), package)
    ]
    if not changed:
        return after.with_changes(body=body) if trimmed else after
    moved: list[cst.SimpleStatementLine] = []
    for index in reversed(changed):  # from the end, so the indices still to take stay valid
        taken, end = _remove(body, index, start, end)
        moved.insert(0, taken)
    gap = docstring_gap(before.body)
    for line in moved:
        end = insert_import(body, start, end, line, first_party, docstring_gap=gap)
    separate_block(body, end)
    return after.with_changes(body=body)


def place_nested_imports(tree: cst.Module, module: str, first_party: Collection[str]) -> cst.Module:
    """Move each ``import <module>`` inside a block (a conditional or lazy import the rule added next to
    the one it replaces) and each ``from <module> import ...`` (one retargeted in place) into isort's
    place within that block's run of imports, as :func:`place_changed_imports` does at the top."""
    return tree.visit(_NestedImportPlacer(module, first_party))


class _NestedImportPlacer(cst.CSTTransformer):
    def __init__(self, module: str, first_party: Collection[str]) -> None:
        super().__init__()
        self._code = f"import {module}"
        self._from = f"from {module} import "
        self._first_party = first_party

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        body: list[Statement] = [
            line
            for line in updated_node.body
            if isinstance(line, (cst.SimpleStatementLine, cst.BaseCompoundStatement))
        ]
        if len(body) != len(updated_node.body):
            return updated_node
        found = [index for index, line in enumerate(body) if _is_import_line(line) and self._is_added(line)]
        if len(found) != 1:
            return updated_node
        (index,) = found
        start = end = index
        while start > 0 and _is_import_line(body[start - 1]):
            start -= 1
        while end < len(body) and _is_import_line(body[end]):
            end += 1
        if end - start == 1:
            if not body[index].leading_lines or body[index].leading_lines[0].comment is not None:
                return updated_node
            # Alone at the head of the block: no blank line below ``if ...:`` / ``def ...:``.
            if index == 0:
                body[0] = body[0].with_changes(leading_lines=_split_leading(body[0].leading_lines)[1])
                return updated_node.with_changes(body=body)
            return updated_node
        line, end = _remove(body, index, start, end)
        insert_import(body, start, end, line, self._first_party)
        return updated_node.with_changes(body=body)

    def _is_added(self, line: Statement) -> bool:
        text = _text(line).strip()
        return text == self._code or text.startswith(self._from)
