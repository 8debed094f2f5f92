"""The import pruner drops its own placeholder lines and nothing else, whatever the allocator reuses.

A regression test for a flaky fixture (``cleanup/import_in_try_block``): the pruner once remembered
emptied import lines by bare ``id()``. A placeholder removed from an inner block (a ``try:``) is freed
before the module's new statements are built, and CPython readily hands its address to one of them, which
the module-level pass then dropped as if it were the emptied import.
"""

from __future__ import annotations

import gc

import libcst as cst

from codemods.cst.imports.pruning import ImportPruner


def test_a_statement_built_where_a_freed_placeholder_lived_is_kept() -> None:
    line = cst.parse_module("import json\n").body[0]
    assert isinstance(line, cst.SimpleStatementLine)
    assert isinstance(line.body[0], cst.Import)
    pruner = ImportPruner({id(line.body[0].names[0])})
    placeholder_id = id(pruner.prune_line(line, line))  # and nothing holds it, as when its block is rebuilt
    assert placeholder_id != id(line), "the only alias is unused: the line becomes a placeholder"
    gc.collect()
    # New statements until one lands where the placeholder was (if it was freed, CPython soon reuses it).
    fresh: list[cst.BaseStatement] = []
    while len(fresh) < 20_000 and (not fresh or id(fresh[-1]) != placeholder_id):
        fresh.append(cst.SimpleStatementLine(body=[cst.Expr(cst.Name("kept"))]))
    body, _ = pruner.drop_emptied(fresh, [])
    assert len(body) == len(fresh)


def test_the_placeholder_itself_is_dropped_and_its_comments_move_on() -> None:
    module = cst.parse_module("# why json\nimport json  # trailing\nx = 1\n")
    first, second = module.body
    assert isinstance(first, cst.SimpleStatementLine)
    assert isinstance(first.body[0], cst.Import)
    pruner = ImportPruner({id(first.body[0].names[0])})
    placeholder = pruner.prune_line(first, first)
    body, footer = pruner.drop_emptied([placeholder, second], [])
    assert footer == []
    assert module.with_changes(body=body).code == "# why json\n# trailing\nx = 1\n"
