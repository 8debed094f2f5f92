"""PS103 psycopg2-c-api: hand psycopg2's C functions the real connection, wherever one may reach them.

A few psycopg2 functions type-check their connection argument in C (``sql.Composable.as_string(conn)``,
``quote_ident(s, conn)``, ``adapt(x).prepare(conn)``, ``register_type(c, conn)``, the ``extras.register_*``
family, ``encrypt_password(pw, user, conn)``); the pooled handle is not a
``psycopg2.extensions.connection``, so they would raise ``TypeError`` once PS100 has pooled the connect.
No monkeypatching of psycopg2: the argument is wrapped in ``db_utils.postgres.driver_connection(...)``,
which returns the real connection for a pooled handle and its argument unchanged for anything else. The
rewrite is therefore correct before and after pooling, which has two consequences:

* the functions are matched by resolved name, but the two methods (``.as_string(x)``, ``.prepare(x)``)
  have receivers nobody can type statically, so their single non-literal argument is wrapped in every
  module (over-wrapping is harmless; a literal is never wrapped);
* a connection made in one phase's file can reach ``as_string`` in another phase's file, so the rule is
  ``TREE_WIDE``: the runner applies it to every non-excluded file whenever any phase runs.

An argument already wrapped is left alone (idempotent). A call that may be one of these but cannot be
resolved (``getattr(extras, name)(conn)``) is reported, and so is a connection that may hide in
``*args``/``**kwargs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import QualifiedNameProvider, ScopeProvider

from codemods.cst.literals import MISSING, literal, literal_string
from codemods.rules._redirect import name_is_taken
from codemods.rules.base import SUPPRESSED_MESSAGE, PoolshiftRule

WRAPPER_MODULE = "db_utils.postgres"
WRAPPER = f"{WRAPPER_MODULE}.driver_connection"

#: Function -> (position, keyword) of its connection argument (keyword None: positional only), from
#: psycopg2 2.9's signatures. Each public name is listed with the private module that defines it.
_FUNCTIONS: Mapping[tuple[str, ...], tuple[int, str | None]] = {
    ("extensions.quote_ident", "_psycopg.quote_ident"): (1, "scope"),
    ("extensions.register_type", "_psycopg.register_type"): (1, None),
    ("extensions.encrypt_password", "_psycopg.encrypt_password"): (2, "scope"),
    ("extras.register_uuid",): (1, "conn_or_curs"),
    ("extras.register_json", "_json.register_json"): (0, "conn_or_curs"),
    ("extras.register_default_json", "_json.register_default_json"): (0, "conn_or_curs"),
    ("extras.register_default_jsonb", "_json.register_default_jsonb"): (0, "conn_or_curs"),
    ("extras.register_hstore",): (0, "conn_or_curs"),
    ("extras.register_composite",): (1, "conn_or_curs"),
    ("extras.register_ipaddress", "_ipaddress.register_ipaddress"): (0, "conn_or_curs"),
    ("extras.register_inet",): (1, "conn_or_curs"),
    ("extras.register_range", "_range.register_range"): (2, "conn_or_curs"),
}
TARGETS: Mapping[str, tuple[int, str | None]] = {
    f"psycopg2.{name}": where for names, where in _FUNCTIONS.items() for name in names
}
#: Methods whose receiver is unknown: their one argument (by keyword: the method's parameter name).
METHODS: Mapping[str, str] = {"as_string": "context", "prepare": "conn"}
#: Modules a getattr lookup of one of the targets may start from.
SOURCE_MODULES = frozenset(name.rpartition(".")[0] for name in TARGETS)
SHORT_NAMES = frozenset(name.rpartition(".")[2] for name in TARGETS) | frozenset(METHODS)


class Psycopg2CApiRule(PoolshiftRule):
    """PS103: wrap the connection argument of psycopg2's type-checking C functions in driver_connection."""

    RULE_ID = "PS103"
    NAME = "psycopg2-c-api"
    DESCRIPTION = (
        "Pass psycopg2's C functions (as_string, quote_ident, prepare, register_*...) the real connection: "
        "wrap it in db_utils.postgres.driver_connection(...)"
    )
    SAFETY = "safe"
    TREE_WIDE = True
    PREFILTER = ("as_string", "prepare", "quote_ident", "register_", "encrypt_password", "psycopg2")
    REASON_CODES: ClassVar[Mapping[str, str]] = {
        "dynamic-callee": "the function may be one of psycopg2's C functions but is looked up dynamically",
        "dynamic-arguments": "the connection may be passed inside *args/**kwargs, which cannot be wrapped",
        "name-conflict": (
            "`db_utils` is bound to something else where the call is, so the wrapper cannot be named"
        ),
    }

    def visit_Module(self, node: cst.Module) -> bool:
        self.wraps: set[int] = set()
        return True

    def visit_Call(self, node: cst.Call) -> None:
        argument = self._connection_argument(node)
        if argument is None or self._leave_alone(argument.value):
            return
        if self.is_suppressed(node):
            self.record(node, "reported", None, SUPPRESSED_MESSAGE)
            return
        if name_is_taken(self.get_metadata(ScopeProvider, node, None), "db_utils"):
            self.record(
                node, "reported", "name-conflict", f"`db_utils` is bound to something else here; {WRAPPER} "
                "cannot be named"
            )  # fmt: skip
            return
        self.wraps.add(id(argument))
        AddImportsVisitor.add_needed_import(self.context, WRAPPER_MODULE)
        self.record(node, "migrated", None, f"connection argument -> {WRAPPER}(...)")

    def _connection_argument(self, call: cst.Call) -> cst.Arg | None:
        """The argument to wrap; None when there is none (reporting what cannot be decided)."""
        names = {name.name for name in self.get_metadata(QualifiedNameProvider, call.func, set())}
        target = next((TARGETS[name] for name in sorted(names) if name in TARGETS), None)
        if target is not None:
            return self._function_argument(call, *target)
        if isinstance(call.func, cst.Attribute) and call.func.attr.value in METHODS:
            return self._method_argument(call, METHODS[call.func.attr.value])
        if self._is_dynamic_lookup(call):
            self.record(
                call, "reported", "dynamic-callee", "getattr on psycopg2 may return one of its C functions, "
                f"which need the real connection; call it by name, or wrap the connection in {WRAPPER}(...)"
            )  # fmt: skip
        return None

    def _function_argument(self, call: cst.Call, position: int, keyword: str | None) -> cst.Arg | None:
        positional = [arg for arg in call.args if arg.keyword is None and not arg.star]
        starred = any(arg.star for arg in call.args)
        for arg in call.args:
            if keyword is not None and arg.keyword is not None and arg.keyword.value == keyword:
                return arg
        if len(positional) > position and not any(arg.star == "*" for arg in call.args[: position + 1]):
            return positional[position]
        if starred:
            self.record(
                call, "reported", "dynamic-arguments", "the connection may be in *args/**kwargs; pass it by "
                f"name wrapped in {WRAPPER}(...)"
            )  # fmt: skip
        return None

    @staticmethod
    def _method_argument(call: cst.Call, keyword: str) -> cst.Arg | None:
        if len(call.args) != 1 or call.args[0].star:
            return None
        arg = call.args[0]
        return arg if arg.keyword is None or arg.keyword.value == keyword else None

    def _leave_alone(self, value: cst.BaseExpression) -> bool:
        """Literals (never a connection) and arguments already wrapped."""
        if literal(value) is not MISSING or literal_string(value, decode_bytes=True) is not None:
            return True
        if isinstance(value, (cst.Integer, cst.Float, cst.Imaginary, cst.FormattedString)):
            return True
        if isinstance(value, cst.Name) and value.value in ("True", "False", "None"):
            return True
        if isinstance(value, cst.Call):
            names = {name.name for name in self.get_metadata(QualifiedNameProvider, value.func, set())}
            return WRAPPER in names
        return False

    def _is_dynamic_lookup(self, call: cst.Call) -> bool:
        """``getattr(<psycopg2 module>, name)(...)`` with a non-literal name or a target's name."""
        inner = call.func
        if not isinstance(inner, cst.Call) or len(inner.args) < 2:
            return False
        names = {name.name for name in self.get_metadata(QualifiedNameProvider, inner.func, set())}
        if "builtins.getattr" not in names:
            return False
        modules = {name.name for name in self.get_metadata(QualifiedNameProvider, inner.args[0].value, set())}
        if not modules & (SOURCE_MODULES | {"psycopg2"}):
            return False
        attribute = literal_string(inner.args[1].value)
        return attribute is None or attribute in SHORT_NAMES

    def leave_Arg(self, original_node: cst.Arg, updated_node: cst.Arg) -> cst.Arg:
        if id(original_node) not in self.wraps:
            return updated_node
        wrapped = cst.Call(func=cst.parse_expression(WRAPPER), args=[cst.Arg(updated_node.value)])
        return updated_node.with_changes(value=wrapped)
