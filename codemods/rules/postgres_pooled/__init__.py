"""PS101 postgres-pooled: the seed pattern -> ``with get_pooled_connection(helper) as conn:``, where proven.

The seed pattern, at the top level of a function body::

    conn = get_postgres_connection()
    if not conn:                 # or: if conn is None:
        return X
    try:
        BODY
    except ...:                  # optional handlers
        ...
    finally:
        conn.close()

And the *straight-line form*, for a helper shown to never return None (with None, the legacy code fails
with AttributeError where the pooled block raises OperationalError: ``none-guard-differs``)::

    conn = get_postgres_connection()
    BODY                         # everything up to the close becomes the block
    conn.close()                 # the only close in the function, at the level of the call

Its legacy code never closed the connection on an exception or an early ``return`` (the transaction stayed
open until the object was collected, then rolled back). The pooled block rolls an exception's work back at
once, the same data; an early ``return`` commits, so the body proof covers each one as it covers a seed's.

The helper itself is passed (``get_pooled_connection(get_postgres_connection)``): the pooled block calls
it, so it borrows from the helper's own pool (PS100 pooled its ``psycopg2.connect``) with the helper's own
parameters, and the helper need not resemble the shim at all. The block commits on a clean exit, rolls
back on an exception, always returns the connection, and raises ``psycopg2.OperationalError`` when the
helper returns ``None``. That is *not* a drop-in for the seed, in three ways, and the rule rewrites only
when it can show that none is observable (otherwise the call stays as it is, already pooled by PS100, and
this rule records a ``reported`` site with the reason):

* **transactions**: the pooled block commits on a clean exit, while closing a legacy connection rolls back
  uncommitted work. Every normal exit of BODY must therefore have nothing uncommitted: it runs only
  literal read-only ``SELECT``s, or the last write before each exit is followed by ``commit()``/
  ``rollback()``, or BODY is a single ``with conn:`` block (which commits at the same point anyway).
  Otherwise: ``implicit-transaction``.
* **the None guard**: the pooled block raises ``psycopg2.OperationalError`` where the legacy code took the
  guard. The guard must end in ``return`` and the first handler of the seed's own ``try`` that catches
  ``OperationalError`` must run the very same statements. Otherwise: ``none-guard-differs``. A helper
  shown to *never* return None (it raises; :mod:`codemods.legacy_helpers.raising_helper`) needs no guard:
  its failure reaches the caller in both forms, and a guard it has is dead code.
* **the helper's own exceptions**: the helper is now called inside the seed's ``try``, so when the seed has
  ``except`` blocks, a helper that may raise (rather than return ``None`` on a failed connect) would have
  its exception caught by them. The helper's contract must be shown (``try: return connect(...) except
  <connect failure>: return None``), or, for a helper that never returns None, every handler must leave
  its exception alone (``raise`` alone; ``except IntegrityError``/``DataError`` when it runs only its
  connect). Otherwise: ``helper-may-raise`` (or ``unknown-helper``). Even a helper that keeps the contract
  may let some exceptions out (``os.environ["DSN"]``: a ``KeyError``; an invalid DSN: a
  ``ProgrammingError`` its ``except OperationalError`` does not catch): they went to the caller, past the
  seed's ``try``, so no handler of the seed may catch one (:mod:`codemods.legacy_helpers.escapes` states
  what escapes). Otherwise: ``helper-error-escapes``.

And the connection must stay inside the block: not returned, stored, passed to a function, yielded or
captured (``conn-escapes-scope``), not touched after the ``try`` or in an ``except`` block that now runs
after the connection went back to the pool (``conn-used-after-close``), and used only through cursors,
``commit`` and ``rollback`` (``unsupported-connection-use``).

``execute_with_pool``/``execute_with_pool_connection`` are never produced automatically: the first needs
the block turned into a function (a readability call the user should make), the second changes the error
contract (see the guide).

This module finds the candidates and records every decision; the rule's own machinery sits beside it:
:mod:`.seed_proof` (the shape, the guard, the handlers, what surrounds the seed), :mod:`.body_proof` (the
``try`` body: transactions and where the connection goes), :mod:`.read_only_sql` (which SQL cannot write)
and :mod:`.rewrite` (the new ``with`` statement).
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import (
    ImportAssignment,
    PositionProvider,
    QualifiedNameProvider,
    Scope,
    ScopeProvider,
)

from codemods.cst.imports.pruning import ImportPruner
from codemods.cst.literals import MISSING, literal
from codemods.cst.syntax import code_of, simple_assignment, suite_statements
from codemods.legacy_helpers.discovery import DEFAULT_HELPER_NAME
from codemods.legacy_helpers.escapes import Escapes, is_escape_fact
from codemods.legacy_helpers.lookup import HelperDifferences
from codemods.legacy_helpers.raising_helper import NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT
from codemods.legacy_helpers.uses import HelperUse
from codemods.rules._legacy_helper_call import LegacyHelperCallRule
from codemods.rules.postgres_pooled.body_proof import Refusal
from codemods.rules.postgres_pooled.rewrite import apply_plans, plain_arguments, pooled_source
from codemods.rules.postgres_pooled.seed_proof import HelperFacts, SeedPlan, SeedProof

POOLED = "get_pooled_connection"


class _Candidates(cst.CSTVisitor):
    """``conn = <call>`` statements at the top level of function bodies: (function, index, name, call)."""

    def __init__(self, calls: set[int]) -> None:
        super().__init__()
        self.calls = calls
        self.found: list[tuple[cst.FunctionDef, int, str, cst.Call]] = []
        # ids of those calls whose connection is kept on an object: ``self.connection = helper(dsn)``.
        self.stored_on_object: set[int] = set()

    def visit_Assign(self, node: cst.Assign) -> None:
        if id(node.value) in self.calls and any(
            isinstance(target.target, (cst.Attribute, cst.Subscript)) for target in node.targets
        ):
            self.stored_on_object.add(id(node.value))

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        for index, statement in enumerate(suite_statements(node.body)):
            rebind = simple_assignment(statement)
            if rebind is not None and isinstance(rebind[1], cst.Call) and id(rebind[1]) in self.calls:
                self.found.append((node, index, rebind[0], rebind[1]))


def _facts(contracts: HelperDifferences, use: HelperUse) -> HelperFacts:
    """What the helper's contract analysis showed about it raising rather than returning None."""
    sentences = contracts.of(use.helper) or ()
    return HelperFacts(
        never_none=NEVER_RETURNS_NONE in sentences,
        runs_only_connect=RUNS_ONLY_THE_CONNECT in sentences,
        escapes=Escapes.from_sentences(sentences),
    )


class PostgresPooledRule(LegacyHelperCallRule):
    """The seed pattern -> ``with get_pooled_connection() as conn:``, where proven behavior-preserving."""

    RULE_ID = "PS101"
    NAME = "postgres-pooled"
    DESCRIPTION = (
        "Rewrite `conn = get_postgres_connection(); if not conn: return ...; try: ... finally: conn.close()` "
        "into `with get_pooled_connection() as conn:` where the rule proves behavior stays the same."
    )
    SAFETY = "guarded"
    PREFILTER: ClassVar[tuple[str, ...]] = (DEFAULT_HELPER_NAME,)
    REASON_CODES: ClassVar[dict[str, str]] = {
        "not-seed-pattern": "the call is not in the conn/guard/try-finally shape the rule rewrites",
        "none-guard-differs": "the pooled block raises where the legacy code took the None guard, observably",
        "implicit-transaction": (
            "a path ends with uncommitted work: legacy close rolls back, the pooled block commits"
        ),
        "conn-escapes-scope": "the connection or a cursor is returned, stored, passed, yielded or captured",
        "conn-used-after-close": "the connection or a cursor is used after the block or in an except block",
        "unsupported-connection-use": (
            "the connection is used in a way the proof does not cover (attributes, `with conn:` inside...)"
        ),
        "helper-may-raise": (
            "the seed has except blocks and the helper may raise instead of returning None: they would "
            "catch its exception once it is called inside the block"
        ),
        "helper-error-escapes": (
            "an exception the helper lets escape (a missing variable, an invalid DSN) would reach an except "
            "block of the seed once the helper is called inside the block"
        ),
        "unknown-helper": "the legacy helper's definition was not found (needed when the seed has except)",
        "unsupported-argument": "the helper's arguments are not names or literals the block can pass on",
        "dynamic-callee": "the name may be the helper or something else",
    }

    def visit_Module(self, node: cst.Module) -> bool:
        self.plans: dict[int, list[SeedPlan]] = {}
        self.pruner = ImportPruner(set())
        if not self.options.legacy_helpers:
            return False
        uses = [use for use in self.helper_uses(node) if use.is_call and not use.in_definition]
        contracts = self.helper_differences(node, contract_only=True)
        candidates = _Candidates({id(use.node) for use in uses})
        node.visit(candidates)
        by_call = {id(call): (function, index, name) for function, index, name, call in candidates.found}
        rewritten: list[cst.CSTNode] = []
        for use in uses:
            if id(use.node) in candidates.stored_on_object:
                self.record(
                    use.node,
                    "reported",
                    "conn-escapes-scope",
                    "the connection is kept on an object, so it outlives this function and no `with` block "
                    "can hold it; it is pooled already (PS100) and holds a pool slot until it is closed",
                )
                continue
            if self._decide(use, contracts, by_call.get(id(use.node))):
                assert isinstance(use.node, cst.Call)
                rewritten.append(use.node.func)
        if rewritten:
            # The helper stays referenced (it is passed to the pooled block): no import is freed.
            scopes = {s for s in self.metadata[ScopeProvider].values() if isinstance(s, Scope)}
            self.pooled_call = self._pooled_callee(scopes)
        return True

    def _decide(
        self,
        use: HelperUse,
        contracts: HelperDifferences,
        candidate: tuple[cst.FunctionDef, int, str] | None,
    ) -> bool:
        assert isinstance(use.node, cst.Call)
        if self.report_unrewritable_call(
            use,
            "an argument is not a name or a literal (the pooled block calls `lambda: helper(...)`)",
            arguments_allowed=plain_arguments(use.node),
        ):
            return False
        if candidate is None:
            self.record(
                use.node,
                "reported",
                "not-seed-pattern",
                "not `conn = helper()` at the top of a function body",
            )
            return False
        function, index, name = candidate
        proof = SeedProof(function, index, name, self._line_of, self._names_of, helper=_facts(contracts, use))
        try:
            plan = proof.prove()
        except Refusal as refusal:
            self.record(use.node, "reported", refusal.reason, refusal.message)
            return False
        if (
            proof.needs_none_contract
            and self._has_handlers(function, plan)
            and self._report_broken_contract(use, contracts)
        ):
            return False
        if self._report_unbound_arguments(use.node, function):
            return False
        self.plans.setdefault(id(function.body), []).append(plan)
        callee = code_of(pooled_source(use.node))
        # The message starts with the helper's name: scan counts PS101's rewrites per helper by it.
        form = f"{name} = ... {name}.close()" if plan.straight else "seed pattern"
        self.record(use.node, "migrated", None, f"{use.helper}: {form} -> with {POOLED}({callee}) as {name}:")
        return True

    def _report_unbound_arguments(self, call: cst.Call, function: cst.FunctionDef) -> bool:
        """A name passed on must be bound when the block opens: the function's parameters and imports.

        (A local variable could be unbound; inside the seed's ``try`` its NameError would reach the
        handlers, and from the lambda it is a NameError rather than an UnboundLocalError.)
        """
        parameters = {
            param.name.value
            for param in (
                *function.params.posonly_params,
                *function.params.params,
                *function.params.kwonly_params,
            )
        }
        for argument in call.args:
            value = argument.value
            if not isinstance(value, cst.Name) or literal(value) is not MISSING or value.value in parameters:
                continue
            if not any(
                q.source.name == "IMPORT" for q in self.get_metadata(QualifiedNameProvider, value, set())
            ):
                self.record(
                    call,
                    "reported",
                    "unsupported-argument",
                    f"`{value.value}` is neither a parameter of the function nor an import: it may be "
                    "unbound when `lambda: helper(...)` reads it",
                )
                return True
        return False

    @staticmethod
    def _has_handlers(function: cst.FunctionDef, plan: SeedPlan) -> bool:
        if plan.straight:
            return False
        attempt = suite_statements(function.body)[plan.index + plan.length - 1]
        return isinstance(attempt, cst.Try) and bool(attempt.handlers)

    def _report_broken_contract(self, use: HelperUse, contracts: HelperDifferences) -> bool:
        """Record and return True when the helper may raise where the seed's handlers would catch it."""
        if self.report_unknown_helper(use, contracts, "that it returns None instead of raising"):
            return True
        sentences = contracts.of(use.helper) or ()
        broken = [sentence for sentence in sentences if not is_escape_fact(sentence)]
        if not broken and Escapes.from_sentences(sentences) is None:
            # The analysis of a helper that keeps the contract always states what escapes it (SeedProof
            # checked that against the handlers): without it, nothing shows the handlers are safe.
            self.record(
                use.node,
                "reported",
                "helper-error-escapes",
                f"what may escape {use.helper} is not stated, so poolshift cannot show that the seed's "
                "except blocks do not catch it",
            )
            return True
        if not broken:
            return False
        self.record(
            use.node,
            "reported",
            "helper-may-raise",
            f"{use.helper} may raise where the seed's except blocks would now catch it: " + "; ".join(broken),
        )
        return True

    def _line_of(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def _names_of(self, node: cst.CSTNode) -> set[str]:
        """Qualified names; a module-level name counts only when it is a class (not an alias of one)."""
        names: set[str] = set()
        for qualified in self.get_metadata(QualifiedNameProvider, node, set()):
            if qualified.source.name == "LOCAL" and not self._is_local_class(node):
                names.add("?")  # e.g. `DBError = psycopg2.Error`: unknown, so the rule refuses
            else:
                names.add(qualified.name)
        return names

    def _is_local_class(self, node: cst.CSTNode) -> bool:
        if not isinstance(node, cst.Name):
            return False
        scope = self.get_metadata(ScopeProvider, node, None)
        if scope is None:
            return False
        assignments = list(scope[node.value])
        return bool(assignments) and all(
            isinstance(getattr(a, "node", None), cst.ClassDef) for a in assignments
        )

    def _pooled_callee(self, scopes: set[Scope]) -> str:
        """``get_pooled_connection`` unless that name is already bound to something else in the file."""
        for scope in scopes:
            for assignment in scope.assignments[POOLED]:
                node = getattr(assignment, "node", None)
                if not (
                    isinstance(assignment, ImportAssignment)
                    and isinstance(node, cst.ImportFrom)
                    and isinstance(node.module, cst.Name)
                    and node.module.value == "db_utils"
                    and not node.relative
                ):
                    AddImportsVisitor.add_needed_import(self.context, "db_utils")
                    return f"db_utils.{POOLED}"
        AddImportsVisitor.add_needed_import(self.context, "db_utils", POOLED)
        return POOLED

    # -- transform --------------------------------------------------------------------------------

    def rewrite_block(
        self, original_node: cst.IndentedBlock, body: list[cst.BaseStatement]
    ) -> list[cst.BaseStatement]:
        """Each seed proven in this block becomes its ``with`` statement (see :mod:`.rewrite`)."""
        plans = self.plans.get(id(original_node))
        if not plans:
            return body
        return apply_plans(plans, body, self.pooled_call)
