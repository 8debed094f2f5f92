"""Read-only verdicts without LibCST's metadata: the redirect rules' sites from ``ast`` plus the call.

``scan``, ``check`` and ``status`` only need each site's verdict, and for a redirect rule (PS201, PS301)
the verdict of a plainly imported call depends on the call's own arguments and, at most, on where its
result is assigned. Parsing the whole module with LibCST and resolving its scopes is the slow part of a
large module; parsing each candidate call's text alone is cheap. So when a file is *plain* for a rule
(every name that resolves to the rule's target is bound only by imports, nothing stores into or patches
the target, no star import, no ``db_utils`` name that could conflict), the rule's own
:meth:`~codemods.rules._redirect.RedirectCallRule.check_detached_call` judges each call from its text;
anything else returns None and the file goes through LibCST as before. A test pins both routes to the
same sites.

The shortcut is only valid where LibCST surely gets through the file (:func:`~codemods.limits.
libcst_surely_succeeds`): a file nested deep enough to near LibCST's recursion limits, or large enough
to near the time limit, goes through LibCST too, which migrates it or reports the limit exactly as
``migrate`` does (``too-deeply-nested``, ``timeout``): ``check`` must never promise what ``migrate``
then refuses.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import libcst as cst
from libcst.codemod import CodemodContext

from codemods.first_pass import TargetSet, binding_resolver, parse_text
from codemods.limits import DEFAULT_LIMITS, Limits, libcst_surely_succeeds, measure
from codemods.rules._redirect import REQUEST_SCOPED, STORED_IN_MODULE, STORED_IN_OBJECT, RedirectCallRule
from codemods.rules.base import RuleOptions, Site, SiteStatus, dotted_name
from codemods.suppressions import MARKER

__all__ = ["detached_sites"]

#: Text that makes a file need the full analysis (star imports, a db_utils binding).
# A suppression comment is judged where the rules run (transform.apply_suppressions): such files take the
# LibCST path, so `# poolshift: ignore` means the same to scan/check as to migrate.
_NEEDS_METADATA = ("db_utils", "import *", MARKER)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)  # fmt: skip


#: One rule instance per rule class, with the options it was made with: building a LibCST codemod
#: command inspects its class every time, which costs more than judging a small file's calls. The
#: detached route reads nothing per file from the instance (no context, no metadata).
_INSTANCES: dict[type[RedirectCallRule], tuple[RuleOptions, RedirectCallRule]] = {}


def _rule(rule_class: type[RedirectCallRule], options: RuleOptions) -> RedirectCallRule:
    known = _INSTANCES.get(rule_class)
    if known is None or known[0] is not options:
        known = (options, rule_class(CodemodContext(), options))
        _INSTANCES[rule_class] = known
    return known[1]


def detached_sites(
    rule_class: type[RedirectCallRule],
    options: RuleOptions,
    path: str,
    text: str,
    package: str,
    *,
    tree: ast.Module | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Site] | None:
    """The sites ``rule_class`` would record in a dry run, or None when the file needs LibCST.

    ``tree`` is CPython's parse of ``text`` when the caller has it already; ``limits`` are the ones the
    transform would run under.
    """
    tree = _tree_if_shortcut(text, tree, limits)
    if tree is None:
        return None
    rule = _rule(rule_class, options)
    resolve, column = binding_resolver(tree, text, package, options.module_aliases)
    targets = TargetSet(rule_class.TARGETS)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    closed = _closed_at_module_level(tree)
    sites: list[Site] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _may_patch(node, rule_class, resolve):
            return None  # the rule reports the module as monkeypatching the target
        if not isinstance(node, (ast.Name, ast.Attribute)):
            continue
        dotted = dotted_name(node)
        if dotted is None:
            continue
        resolved = resolve(dotted)
        hits = resolved & targets.targets
        if not hits:
            continue
        if resolved != hits or len(hits) > 1 or not isinstance(node.ctx, ast.Load):
            return None  # ambiguous, or the module patches the target: the rule's full analysis decides
        parent = parents.get(node)
        line, col = node.lineno, column(node.lineno, node.col_offset)
        if isinstance(parent, ast.Call) and parent.func is node:
            verdict = _verdict(rule, parent, text, parents, resolve, closed=closed)
            if verdict is None:
                return None
            migrate, reason, message = verdict
            line, col = parent.lineno, column(parent.lineno, parent.col_offset)
            status: SiteStatus = "migratable" if migrate else "reported"
            sites.append(Site(rule.RULE_ID, path, line, col, status, reason, message))
        else:
            inspected = isinstance(parent, ast.Attribute) and parent.value is node
            message = rule.value_reference_message(inspected)
            sites.append(Site(rule.RULE_ID, path, line, col, "reported", "callee-as-value", message))
    return sites


def _tree_if_shortcut(text: str, tree: ast.Module | None, limits: Limits) -> ast.Module | None:
    """CPython's tree of ``text`` when the shortcut may judge the file, else None (it needs LibCST)."""
    if any(word in text for word in _NEEDS_METADATA):
        return None
    if tree is None:
        parsed = parse_text(text)
        if isinstance(parsed, str):  # CPython rejects it: LibCST's path reports why
            return None
        tree = parsed
    return tree if libcst_surely_succeeds(measure(text, tree), limits) else None


def _may_patch(call: ast.Call, rule: type[RedirectCallRule], resolve: Callable[[str], set[str]]) -> bool:
    """``setattr(sqlite3, "connect", f)``, ``mock.patch("sqlite3.connect")``: what the rule calls a patch.

    As broad as the rule's own test (a callee named ``setattr`` or ``patch`` anywhere in its dotted name,
    given the target's name, or its short name next to its module): then the rule must see the file.
    """
    callee = dotted_name(call.func) or ""
    if not {"setattr", "patch"} & set(callee.split(".")):
        return False
    arguments = [*call.args, *(keyword.value for keyword in call.keywords)]
    texts = {_text(arg) for arg in arguments}
    if texts & rule.TARGETS:
        return True
    if rule.SHORT_NAME not in texts:
        return False
    names = (dotted_name(arg) for arg in arguments)
    return any(name is not None and resolve(name) & rule.SOURCE_MODULES for name in names)


def _text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        value = node.value
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


def _verdict(
    rule: RedirectCallRule,
    call: ast.Call,
    text: str,
    parents: dict[ast.AST, ast.AST],
    resolve: Callable[[str], set[str]],
    *,
    closed: frozenset[str],
) -> tuple[bool, str | None, str] | None:
    segment = ast.get_source_segment(text, call)
    if segment is None:
        return None
    try:
        expression = cst.parse_expression(f"({segment})")
    except Exception:  # any trouble: the full analysis decides
        return None
    if not isinstance(expression, cst.Call):
        return None
    try:
        stored_where = _stored_where(call, parents, resolve, closed)
    except _NeedsScopes:
        return None
    verdict = rule.check_detached_call(expression, stored_where)
    if verdict is None:
        return None
    return verdict.migrate, verdict.reason, verdict.message


def _stored_where(
    call: ast.Call,
    parents: dict[ast.AST, ast.AST],
    resolve: Callable[[str], set[str]],
    closed: frozenset[str],
) -> str | None:
    """Where the call's result is kept beyond the call (PS201's ``conn-stored``), like the rule sees it."""
    parent = parents.get(call)
    if isinstance(parent, ast.Assign) and parent.value is call:
        targets = parent.targets
    elif isinstance(parent, ast.AnnAssign) and parent.value is call:
        targets = [parent.target]
    else:
        return None
    if any(
        isinstance(target, (ast.Attribute, ast.Subscript)) and not _request_scoped(target.value, resolve)
        for target in targets
    ):
        return STORED_IN_OBJECT
    scope = parents.get(parent)
    while scope is not None and not isinstance(scope, (*_SCOPES, ast.Module)):
        scope = parents.get(scope)
    if isinstance(scope, ast.Module) and all(
        isinstance(target, ast.Name) and target.id in closed for target in targets
    ):
        return None  # closed by the script's own top-level code (see RedirectCallRule.stored_where)
    return STORED_IN_MODULE if isinstance(scope, (ast.Module, ast.ClassDef)) else None


def _closed_at_module_level(tree: ast.Module) -> frozenset[str]:
    """:func:`~codemods.rules._redirect.closed_at_module_level` on CPython's tree."""
    closed: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        statement = pending.pop()
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            callee = statement.value.func
            if (
                isinstance(callee, ast.Attribute)
                and callee.attr == "close"
                and isinstance(callee.value, ast.Name)
            ):
                closed.add(callee.value.id)
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            for child in getattr(statement, field, ()):
                pending.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])
    return frozenset(closed)


class _NeedsScopes(Exception):
    """The answer depends on which binding of a name is in scope, which only LibCST's analysis knows."""


def _request_scoped(node: ast.expr, resolve: Callable[[str], set[str]]) -> bool:
    """Whether ``node`` is Flask's ``g`` (:data:`REQUEST_SCOPED`); raises :class:`_NeedsScopes` when one
    of the name's bindings is and another is not (``from flask import g`` and a parameter ``g``)."""
    name = dotted_name(node)
    names = resolve(name) if name is not None else set()
    if not names & REQUEST_SCOPED:
        return False
    if names <= REQUEST_SCOPED:
        return True
    raise _NeedsScopes
