"""PS103 psycopg2-c-api: hand psycopg2's C functions the real connection, in the modules that use psycopg2.

A few psycopg2 functions type-check their connection argument in C (``sql.Composable.as_string(conn)``,
``quote_ident(s, conn)``, ``adapt(x).prepare(conn)``, ``register_type(c, conn)``, the ``extras.register_*``
family, ``encrypt_password(pw, user, conn)``); the pooled handle is not a
``psycopg2.extensions.connection``, so they would raise ``TypeError`` once PS100 has pooled the connect.
No monkeypatching of psycopg2: the argument is wrapped in ``db_utils.postgres.driver_connection(...)``,
which returns the real connection for a pooled handle and its argument unchanged for anything else. The
rewrite is therefore correct before and after pooling, which has two consequences:

* the functions are matched by resolved name. The two methods (``.as_string(x)``, ``.prepare(x)``) have
  receivers nobody can type statically, so their single non-literal argument is wrapped only in a module
  that imports psycopg2 (or a project module re-exporting one of its modules): there the wrapper's import
  (``db_utils.postgres``, which imports psycopg2) adds no dependency the module did not have, and any
  psycopg2 object can be the receiver. Elsewhere the method is almost always someone else's
  (``email.message.Message.as_string``, ``requests.Request.prepare``) and wrapping would make the module
  import psycopg2: such a call is left alone, and reported (``receiver-unknown``) only when the project
  imports psycopg2 somewhere, so that a Composable handed across modules is still accounted for;
* a connection made in one phase's file can reach ``as_string`` in another phase's file, so the rule is
  ``TREE_WIDE``: the runner applies it to every non-excluded file whenever any phase runs. The first pass
  (``ast``) narrows that to files with a resolved call of ``TARGETS`` or where
  :func:`has_method_candidate` holds; no other file is parsed with LibCST.

An argument already wrapped is left alone (idempotent). A call that may be one of these but cannot be
resolved (``getattr(extras, name)(conn)``) is reported, and so is a connection that may hide in
``*args``/``**kwargs``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import ClassVar

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor
from libcst.helpers import get_absolute_module_from_package_for_import, get_full_name_for_node
from libcst.metadata import QualifiedNameProvider, ScopeProvider

from codemods.cst.literals import MISSING, literal, literal_string
from codemods.rules._redirect import name_is_taken
from codemods.rules.base import (
    SUPPRESSED_MESSAGE,
    FirstPassView,
    PoolshiftRule,
    RuleOptions,
    dotted_name,
    through_module_aliases,
)

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
#: Qualified function name -> where its connection argument is.
CONNECTION_ARGUMENTS: Mapping[str, tuple[int, str | None]] = {
    f"psycopg2.{name}": where for names, where in _FUNCTIONS.items() for name in names
}
#: The functions, for the first pass (``codemods.first_pass``): a file without a call that may be one of
#: them, and without a method candidate (:func:`has_method_candidate`), is never parsed with LibCST.
TARGETS = frozenset(CONNECTION_ARGUMENTS)
#: Methods whose receiver is unknown: their one argument (by keyword: the method's parameter name).
METHODS: Mapping[str, str] = {"as_string": "context", "prepare": "conn"}
#: Modules a getattr lookup of one of the targets may start from.
SOURCE_MODULES = frozenset(name.rpartition(".")[0] for name in TARGETS)
SHORT_NAMES = frozenset(name.rpartition(".")[2] for name in TARGETS) | frozenset(METHODS)


def imports_psycopg2(imported: Iterable[str], aliases: Mapping[str, str] | None = None) -> bool:
    """Whether one of the imported names (absolute, dotted) is psycopg2 or inside it, after the project's
    module aliases (``app.db.extras`` -> ``psycopg2.extras``)."""
    for name in imported:
        resolved = through_module_aliases(name, aliases or {})
        if resolved == "psycopg2" or resolved.startswith("psycopg2."):
            return True
    return False


def has_method_candidate(tree: ast.AST) -> bool:
    """The first pass's test for the calls it cannot see through ``TARGETS``: ``<x>.as_string(arg)`` or
    ``<x>.prepare(arg)`` with one argument that is neither a literal nor already wrapped, or a callee
    looked up with ``getattr`` (``getattr(extras, name)(conn)``).

    It is over-inclusive against what the rule (LibCST) decides, never under: a file it rejects holds
    nothing the rule would rewrite or report besides the ``TARGETS`` calls.
    """
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and func.func.id == "getattr":
            return True
        if not isinstance(func, ast.Attribute) or func.attr not in METHODS:
            continue
        arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
        if len(arguments) != 1 or isinstance(arguments[0], ast.Starred):
            continue
        if len(node.keywords) == 1 and node.keywords[0].arg not in (None, METHODS[func.attr]):
            continue
        value = arguments[0]
        if isinstance(value, (ast.Constant, ast.JoinedStr)):
            continue
        if isinstance(value, ast.Call) and dotted_name(value.func) == WRAPPER:
            continue
        return True
    return False


class _ImportedNames(cst.CSTVisitor):
    """Every name the module imports, anywhere (absolute, dotted); expressions are skipped, they hold none."""

    def __init__(self, package: str | None) -> None:
        super().__init__()
        self.package = package
        self.names: list[str] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        return not isinstance(node, cst.BaseExpression) and super().on_visit(node)

    def visit_Import(self, node: cst.Import) -> None:
        self.names.extend(get_full_name_for_node(alias.name) or "" for alias in node.names)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        try:
            module = get_absolute_module_from_package_for_import(self.package, node)
        except Exception:  # a relative import beyond the top-level package: not psycopg2 either way
            return
        if module is None:
            return
        names = [] if isinstance(node.names, cst.ImportStar) else node.names
        self.names.append(module)
        self.names.extend(f"{module}.{get_full_name_for_node(alias.name)}" for alias in names)


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
    #: A target is only reached through an import naming psycopg2 (or a project alias, which the runner's
    #: prefilter adds); the method names for the ``receiver-unknown`` reports of modules without one.
    PREFILTER = ("psycopg2", "as_string", "prepare")
    TARGETS: ClassVar[frozenset[str]] = TARGETS
    REASON_CODES: ClassVar[Mapping[str, str]] = {
        "dynamic-callee": "the function may be one of psycopg2's C functions but is looked up dynamically",
        "dynamic-arguments": "the connection may be passed inside *args/**kwargs, which cannot be wrapped",
        "name-conflict": (
            "`db_utils` is bound to something else where the call is, so the wrapper cannot be named"
        ),
        "receiver-unknown": (
            "`.as_string(x)`/`.prepare(x)` in a module that does not import psycopg2: its receiver is "
            "probably not psycopg2's, so the argument is not wrapped"
        ),
        "ambiguous-module": "the function may be one of psycopg2's, but its module cannot be known here",
    }

    @classmethod
    def first_pass_wants(cls, view: FirstPassView) -> bool:
        """The file holds ``<x>.as_string(arg)``/``<x>.prepare(arg)`` (or a ``getattr`` call) the rule must
        judge; calls of ``TARGETS`` reach the rule through the first pass's resolved candidates."""
        return has_method_candidate(view.tree)

    @classmethod
    def applies_to_project(cls, options: RuleOptions) -> bool:
        """The method forms matter only in a project that imports psycopg2 somewhere."""
        return options.psycopg2_imported

    def visit_Module(self, node: cst.Module) -> bool:
        self.wraps: set[int] = set()
        imported = _ImportedNames(self.context.full_package_name)
        node.visit(imported)
        self.uses_psycopg2 = imports_psycopg2(imported.names, self.options.module_aliases)
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
        self.record(node, "migrated", None, f"connection (or cursor) argument -> {WRAPPER}(...)")

    def _connection_argument(self, call: cst.Call) -> cst.Arg | None:
        """The argument to wrap; None when there is none (reporting what cannot be decided)."""
        names = {name.name for name in self.get_metadata(QualifiedNameProvider, call.func, set())}
        target = next((CONNECTION_ARGUMENTS[name] for name in sorted(names) if name in TARGETS), None)
        if target is not None:
            return self._function_argument(call, *target)
        if isinstance(call.func, cst.Attribute) and call.func.attr.value in METHODS:
            argument = self._method_argument(call, METHODS[call.func.attr.value])
            if argument is None or self.uses_psycopg2 or self._leave_alone(argument.value):
                return argument
            if self.options.psycopg2_imported:
                self.record(
                    call, "reported", "receiver-unknown", f".{call.func.attr.value}(...) is not wrapped: "
                    "this module does not import psycopg2; if the receiver can be a psycopg2 object and the "
                    f"argument a pooled connection, wrap it in {WRAPPER}(...)"
                )  # fmt: skip
            return None
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
