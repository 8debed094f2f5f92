"""poolshift with a deliberately broken PS103: besides its own rewrites, it drops `.commit()` calls.

PS103 runs with the first phase on the whole tree (it is TREE_WIDE) and, with PS100, is what every
PostgreSQL file goes through now that PS102 is opt-in; so it is the rule whose breakage matters most. The
first pass normally sends it only files with a candidate (the example app's handlers have none), so the
broken copy also claims every file that imports psycopg2: its breakage then reaches the handlers.

Used only by tests/parity/test_parity.py to prove that the parity session notices a rule that changes
behavior. Run as ``python tests/parity/broken_poolshift.py <poolshift arguments>``.
"""

from __future__ import annotations

import sys

import libcst as cst

from codemods import cli
from codemods.rules.psycopg2_c_api import Psycopg2CApiRule


class _DropCommits(cst.CSTTransformer):
    """Remove every statement line that is just ``<something>.commit()``."""

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.RemovalSentinel:
        for statement in updated_node.body:
            if (
                isinstance(statement, cst.Expr)
                and isinstance(statement.value, cst.Call)
                and isinstance(statement.value.func, cst.Attribute)
                and statement.value.func.attr.value == "commit"
            ):
                return cst.RemoveFromParent()
        return updated_node


_original_leave_module = Psycopg2CApiRule.leave_Module


def _broken_leave_module(
    self: Psycopg2CApiRule, original_node: cst.Module, updated_node: cst.Module
) -> cst.Module:
    return _original_leave_module(self, original_node, updated_node).visit(_DropCommits())


Psycopg2CApiRule.leave_Module = _broken_leave_module  # type: ignore[method-assign,assignment]
Psycopg2CApiRule.first_pass_wants = classmethod(lambda cls, view: True)  # type: ignore[method-assign,assignment]

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and argv[0] in {"scan", "migrate", "check"}:
        argv += ["-j", "1"]  # keep the patched rule in this process, whatever the start method
    sys.exit(cli.main(argv))
