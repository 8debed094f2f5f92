"""The machinery shared by PS201 (sqlite3.connect) and PS301 (urlopen): :class:`RedirectCallRule`.

Both rules redirect every resolved call of one stdlib function to its drop-in in ``db_utils`` and differ
only in which argument lists they can show safe (:meth:`RedirectCallRule.check_call`). The shared part is
where the risk is (name resolution, shadowing, imports), so it is written once and tested through both
rules.

How a module is handled, in one pass before anything is rewritten (decisions need the whole module: an
import can only be retargeted once *every* use of it is known to be a migratable call):

1. every ``Name``/``Attribute`` that LibCST's ``QualifiedNameProvider`` resolves to the target is a
   candidate; text that merely looks like it (a local ``def connect``, a parameter, ``self.connect``,
   strings, comments) never resolves and is never touched;
2. a candidate that is called is checked by the rule (:meth:`RedirectCallRule.check_call`); a candidate
   used as a value (``callback=connect``) is reported, because what it will be called with is unknowable;
3. ``from sqlite3 import connect [as c]`` is retargeted in place (call sites unchanged) when every use of
   that binding is a migratable call; otherwise each migratable call is spelled ``db_utils.sqlite.connect``
   and ``import db_utils.sqlite`` is added once by LibCST's ``AddImportsVisitor``, or, when the module
   is imported only inside blocks (``if URL: import psycopg2``, a function's lazy import), next to each
   such import (:class:`~codemods.cst.imports.rewriting.ImportNextToNested`), so it stays conditional
   or lazy;
4. an import that became unused is removed by LibCST's ``RemoveImportsVisitor`` (which keeps anything still
   referenced, exported in ``__all__`` or used in a string annotation), extended so that the comments of a
   removed import line move to the next statement instead of disappearing
   (:mod:`~codemods.cst.imports.rewriting`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from itertools import pairwise
from typing import ClassVar, TypeGuard

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import (
    AddImportsVisitor,
    GatherExportsVisitor,
    GatherNamesFromStringAnnotationsVisitor,
    RemoveImportsVisitor,
)
from libcst.helpers import get_full_name_for_node
from libcst.metadata import (
    Assignment,
    ClassScope,
    ExpressionContext,
    ExpressionContextProvider,
    GlobalScope,
    ImportAssignment,
    ParentNodeProvider,
    PositionProvider,
    QualifiedName,
    QualifiedNameProvider,
    QualifiedNameSource,
    Scope,
    ScopeProvider,
)

from codemods.cst.imports.kept import mark_kept_imports
from codemods.cst.imports.placement import place_nested_imports
from codemods.cst.imports.pruning import unused_after_calls_rewritten
from codemods.cst.imports.rewriting import (
    CommentKeepingRemoveImports,
    ImportNextToNested,
    KnownUnusedImports,
    closing_comma,
    dotted,
    removal_batches,
    trailing_comment_of,
)
from codemods.cst.literals import literal_string
from codemods.legacy_helpers.discovery import absolute_name
from codemods.rules.base import (
    SUPPRESSED_MESSAGE,
    PoolshiftRule,
    RuleOptions,
    Verdict,
    through_module_aliases,
)

#: Reason codes every redirect rule can emit (each rule adds its own argument-level codes).
COMMON_REASON_CODES: Mapping[str, str] = {
    "callee-as-value": "the function is passed or stored as a value, not called; its arguments are unknown",
    "dynamic-callee": "the function is reached through an object or looked up with getattr: unresolvable",
    "ambiguous-callee": "the name may refer to the stdlib function or to another binding of the same name",
    "monkeypatched": "this module replaces the stdlib function itself; its calls must keep hitting the patch",
    "star-import": "the name comes from a star import; it cannot be resolved safely",
    "name-conflict": "`db_utils` is bound to something else where the call is, so the rewrite cannot name it",
    "unsupported-argument": "the argument list is outside what the rule knows to be equivalent",
    "ambiguous-module": "the module the name comes from cannot be known (unbound, or a project module "
    "that does not show it); import the module by name to migrate",
}

#: Where a call's result outlives the call, as ``check_detached_call`` is told (and the report says it).
STORED_IN_OBJECT = "on an object or in a container"
STORED_IN_MODULE = "in a module or class attribute"
#: Objects that live for one request (application context): a connection kept on them, as Flask's own
#: tutorial keeps ``g.db`` and closes it in a teardown handler, is borrowed per unit of work already.
REQUEST_SCOPED = frozenset({"flask.g", "quart.g"})


def closed_at_module_level(module: cst.Module) -> frozenset[str]:
    """The names ``X`` of every ``X.close()`` statement in ``module``'s top-level code, blocks (``if
    __name__ == "__main__":``, ``try``/``finally``) included, functions and classes not."""
    closed: set[str] = set()
    pending: list[cst.BaseStatement | cst.BaseSuite] = list(module.body)
    while pending:
        statement = pending.pop()
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            continue
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                name = _closed_name(small)
                if name is not None:
                    closed.add(name)
            continue
        for child in statement.children:
            if isinstance(child, (cst.BaseSuite, cst.BaseStatement)):
                pending.append(child)
            elif isinstance(child, (cst.Else, cst.Finally, cst.ExceptHandler)):
                pending.append(child.body)
    return frozenset(closed)


def _closed_name(statement: cst.BaseSmallStatement) -> str | None:
    if not isinstance(statement, cst.Expr) or not isinstance(statement.value, cst.Call):
        return None
    callee = statement.value.func
    if (
        isinstance(callee, cst.Attribute)
        and callee.attr.value == "close"
        and isinstance(callee.value, cst.Name)
    ):
        return callee.value.value
    return None


def _breaks_line(comma: cst.Comma | cst.MaybeSentinel) -> TypeGuard[cst.Comma]:
    return isinstance(comma, cst.Comma) and isinstance(comma.whitespace_after, cst.ParenthesizedWhitespace)


def _shifted(comma: cst.Comma, delta: int) -> cst.Comma:
    """The line-breaking comma with the next line's indentation moved right (or left) by ``delta``."""
    after = cst.ensure_type(comma.whitespace_after, cst.ParenthesizedWhitespace)
    indent = after.last_line.value
    width = max(0, len(indent) + delta) if indent.strip(" ") == "" else len(indent)
    if width == len(indent):
        return comma
    return comma.with_changes(
        whitespace_after=after.with_changes(last_line=cst.SimpleWhitespace(" " * width))
    )


def name_is_taken(scope: Scope | None, root: str) -> bool:
    """Whether ``root`` (``db_utils``) is bound in ``scope`` to anything but the package itself."""
    if scope is None or root not in scope:
        return False
    return not all(_is_plain_import_of(assignment, root) for assignment in scope[root])


def _is_plain_import_of(assignment: object, root: str) -> bool:
    """``import db_utils`` / ``import db_utils.x`` (no alias): binds the real package."""
    if not isinstance(assignment, Assignment) or not isinstance(assignment.node, cst.Import):
        return False
    return any(
        alias.asname is None and alias.evaluated_name.split(".")[0] == root for alias in assignment.node.names
    )


class _NodeCollector(cst.CSTVisitor):
    """Collects the nodes the analysis looks at; import statements' own names are not references."""

    def __init__(self) -> None:
        self.calls: list[cst.Call] = []
        self.references: list[cst.Name | cst.Attribute] = []
        self.import_froms: list[cst.ImportFrom] = []

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        self.import_froms.append(node)
        return False

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append(node)

    def visit_Name(self, node: cst.Name) -> None:
        self.references.append(node)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.references.append(node)


class RedirectCallRule(PoolshiftRule):
    """Redirects resolved calls of one stdlib function to its ``db_utils`` drop-in (see module docstring).

    Subclasses set ``TARGETS`` (qualified names of the function), ``SOURCE_MODULES`` (modules it lives in,
    for star imports and ``getattr``), ``SHORT_NAME``, ``REPLACEMENT_MODULE`` and implement ``check_call``.
    """

    TARGETS: ClassVar[frozenset[str]] = frozenset()
    SOURCE_MODULES: ClassVar[frozenset[str]] = frozenset()
    SHORT_NAME: ClassVar[str] = ""
    REPLACEMENT_MODULE: ClassVar[str] = ""
    #: What the report tells the user to do about a reference used as a value (``callee-as-value``).
    VALUE_ADVICE: ClassVar[str] = ""
    #: Whether the drop-in hands its calls to a test's stand-in of the target (db_utils.stand_ins): then a
    #: test that inspects its mock through the name (``urlopen.call_count``) needs no change.
    DROP_IN_REACHES_STAND_INS: ClassVar[bool] = False

    def __init__(self, context: CodemodContext, options: RuleOptions | None = None) -> None:
        super().__init__(context, options)
        # Parents and load/store contexts come straight from the wrapper (it caches them) rather than
        # through METADATA_DEPENDENCIES, whose inferred type on PoolshiftRule cannot be widened here.
        self._parents: Mapping[cst.CSTNode, cst.CSTNode] = {}
        self._expression_contexts: Mapping[cst.CSTNode, ExpressionContext] = {}
        # Decisions, keyed by original nodes (the transformer's leave_* methods get those back).
        self._call_rewrites: set[cst.Call] = set()
        self._import_rewrites: dict[cst.ImportFrom, set[int]] = {}
        # (module, obj, alias) of imports the rewrites may have left unused.
        self._removals: list[tuple[str, str | None, str | None]] = []
        # Those of them imported only inside a block (``if URL: import psycopg2``, a function's lazy
        # import): the drop-in's import goes next to them, not to the top of the module.
        self._nested_removals: set[tuple[str, str | None, str | None]] = set()
        # The original callees the rewrites replaced: uses of an import inside them go with them.
        self._rewritten_callees: list[cst.CSTNode] = []
        # Every string literal's source text: a name an import binds may be used in a string annotation.
        self._strings: list[str] = []
        self._module_closes: frozenset[str] | None = None
        self._exported: frozenset[str] = frozenset()  # ``__all__``'s names, read in visit_Module

    # ----- rule-specific hook -------------------------------------------------------------------------

    def check_call(self, call: cst.Call) -> Verdict:
        """Decide whether this resolved call's arguments are within what the drop-in is shown to match."""
        raise NotImplementedError

    def check_detached_call(self, call: cst.Call, stored_where: str | None) -> Verdict | None:
        """``check_call`` for a call parsed on its own, without the module's metadata; None: not possible.

        Read-only runs (scan, check, status) judge a plainly imported, unambiguous call this way: the
        engine's first pass has resolved the name, and the call's own text is all this rule reads.
        ``stored_where`` is where the call's result is assigned, when it outlives the call
        (``STORED_IN_OBJECT``/``STORED_IN_MODULE``), else None.
        """
        return None

    def value_reference_message(self, inspected: bool = False) -> str:
        """What the report says about a target used as a value (``callee-as-value``); ``inspected``: one of
        its attributes is read (``urlopen.call_count``: a test inspecting its mock)."""
        target = self._target_text()
        if inspected and self.DROP_IN_REACHES_STAND_INS:
            return (
                f"an attribute of {target} is read here, as a test reads its mock's (call_count, "
                f"assert_called_with...): nothing to change, migrated calls still reach a test's stand-in of "
                f"{target} (migration guide: Test suites that mock the driver)"
            )
        return f"{target} is used as a value, not called here; {self.VALUE_ADVICE}"

    def dynamic_lookup_message(self) -> str:
        """What the report says about a ``getattr`` lookup that may return the target (``dynamic-callee``)."""
        return f"getattr on the module may return {self._target_text()}; call it by name to migrate"

    # ----- analysis -----------------------------------------------------------------------------------

    def visit_Module(self, node: cst.Module) -> None:
        wrapper = self.context.wrapper
        if wrapper is None:
            # Without load/store contexts monkeypatches would go unseen: refuse rather than guess.
            raise RuntimeError(f"{self.RULE_ID} must run through transform_module (it needs metadata)")
        self._parents = wrapper.resolve(ParentNodeProvider)
        self._expression_contexts = wrapper.resolve(ExpressionContextProvider)
        collector = _NodeCollector()
        node.visit(collector)
        exports = GatherExportsVisitor(self.context)
        node.visit(exports)
        self._exported = frozenset(exports.explicit_exported_objects)
        patched_at = self._find_monkeypatch(collector)
        star = self._has_star_import(collector.import_froms)
        migratable, called = self._classify_calls(collector.calls, patched_at, star)
        self._report_value_references(collector.references, called, star)
        retargeted = self._plan_import_rewrites(collector.import_froms, migratable, self._exported)
        for call, verdict in migratable.items():
            if call.func in retargeted or self._place_attribute_rewrite(call):
                self.record(call, "migrated", verdict.reason, verdict.message)

    def stored_where(self, call: cst.Call) -> str | None:
        """Where the call's result is kept beyond the call (an attribute, a container, a module or class
        attribute), for the report; None when it is only bound to a local name or not stored at all."""
        parent = self._parents.get(call)
        targets: list[cst.BaseExpression] = []
        if isinstance(parent, cst.Assign) and parent.value is call:
            targets = [target.target for target in parent.targets]
        elif isinstance(parent, cst.AnnAssign) and parent.value is call:
            targets = [parent.target]
        if not targets:
            return None
        if any(
            isinstance(target, (cst.Attribute, cst.Subscript)) and not self._request_scoped(target.value)
            for target in targets
        ):
            return STORED_IN_OBJECT
        scope = self.get_metadata(ScopeProvider, call, None)
        if isinstance(scope, GlobalScope) and all(
            isinstance(target, cst.Name) and target.value in self._closed_by_module_code()
            for target in targets
        ):
            return None  # a script's connection, closed at its end: its unit of work is the script
        if isinstance(scope, (GlobalScope, ClassScope)):
            return STORED_IN_MODULE
        return None

    def _closed_by_module_code(self) -> frozenset[str]:
        """Names the module's own top-level code closes (``conn.close()``, not inside a def or class)."""
        if self._module_closes is None:
            wrapper = self.context.wrapper
            self._module_closes = (
                closed_at_module_level(wrapper.module) if wrapper is not None else frozenset()
            )
        return self._module_closes

    def _request_scoped(self, node: cst.BaseExpression) -> bool:
        names = {name.name for name in self._qualified(node)}
        return bool(names) and names <= REQUEST_SCOPED

    def _qualified(self, node: cst.CSTNode) -> set[QualifiedName]:
        names = set(self.get_metadata(QualifiedNameProvider, node, set()))
        if not self.options.module_aliases:
            return names
        return {self._through_project(name) for name in names}

    def _through_project(self, qualified: QualifiedName) -> QualifiedName:
        """``pkg.utils.sqlite3.connect`` is ``sqlite3.connect`` when the project's code shows it is."""
        absolute = absolute_name(qualified.name, self.context.full_package_name) or qualified.name
        name = through_module_aliases(absolute, self.options.module_aliases)
        return qualified if name == absolute else QualifiedName(name, qualified.source)

    def _matches(self, node: cst.CSTNode) -> tuple[bool, bool]:
        """(resolves to the target at all, resolves *only* to the target's import)."""
        names = self._qualified(node)
        hits = {name for name in names if name.name in self.TARGETS}
        unique = bool(hits) and hits == names and all(h.source is QualifiedNameSource.IMPORT for h in hits)
        if unique and isinstance(node, cst.Attribute):
            unique = self._every_root_binding_leads_to_target(node)
        return bool(hits), unique

    def _every_root_binding_leads_to_target(self, node: cst.Attribute) -> bool:
        """LibCST resolves ``urllib.request.urlopen`` through the import that names ``urllib.request`` alone,
        even where ``urllib`` is also bound otherwise (``try: import urllib2 as urllib`` / ``except
        ImportError: import urllib.request``): each binding of the root name must lead to the target."""
        attributes: list[str] = []
        root: cst.BaseExpression = node
        while isinstance(root, cst.Attribute):
            attributes.append(root.attr.value)
            root = root.value
        rest = ".".join(reversed(attributes))
        for binding in self._qualified(root):
            dotted = QualifiedName(f"{binding.name}.{rest}", binding.source)
            if self.options.module_aliases:
                dotted = self._through_project(dotted)
            if dotted.name not in self.TARGETS:
                return False
        return True

    def _resolves_to_module(self, node: cst.CSTNode) -> bool:
        return any(name.name in self.SOURCE_MODULES for name in self._qualified(node))

    def _has_star_import(self, import_froms: Iterable[cst.ImportFrom]) -> bool:
        return any(
            isinstance(imp.names, cst.ImportStar) and self._absolute_module(imp) in self.SOURCE_MODULES
            for imp in import_froms
        )

    def _absolute_module(self, imp: cst.ImportFrom) -> str | None:
        if imp.relative or imp.module is None:
            return None
        return get_full_name_for_node(imp.module)

    def _find_monkeypatch(self, collector: _NodeCollector) -> int | None:
        """Line of the first place this module replaces the target in its home module, if any."""
        # A name being bound resolves to itself (``x``, ``Cls.x``), never through an import: only one
        # named like a target's last part can be the target. Skipping the others is not only cheaper:
        # LibCST finds a binding's own name by scanning every binding of that name in its scope, so
        # asking for each of 20,000 ``x = 1`` costs 20,000 squared.
        last_parts = {target.rpartition(".")[2] for target in self.TARGETS}
        for ref in collector.references:
            context = self._expression_contexts.get(ref)
            binds = context is ExpressionContext.STORE and isinstance(ref, cst.Name)
            if binds and ref.value not in last_parts:
                continue
            if context in (ExpressionContext.STORE, ExpressionContext.DEL) and self._matches(ref)[0]:
                return self._line(ref)
        for call in collector.calls:
            if self._is_patch_call(call):
                return self._line(call)
        return None

    def _is_patch_call(self, call: cst.Call) -> bool:
        """``setattr(sqlite3, "connect", f)``, ``mock.patch("sqlite3.connect")``, ``patch.object(...)``."""
        callee = get_full_name_for_node(call.func) or ""
        if not {"setattr", "patch"} & set(callee.split(".")):
            return False
        texts = {literal_string(arg.value, decode_bytes=True) for arg in call.args}
        if texts & self.TARGETS:
            return True
        return self.SHORT_NAME in texts and any(self._resolves_to_module(arg.value) for arg in call.args)

    def _classify_calls(
        self, calls: Iterable[cst.Call], patched_at: int | None, star: bool
    ) -> tuple[dict[cst.Call, Verdict], set[cst.CSTNode]]:
        """Migratable calls with their verdicts, and every callee node (those are not value references)."""
        migratable: dict[cst.Call, Verdict] = {}
        called: set[cst.CSTNode] = set()
        for call in calls:
            called.add(call.func)
            hit, unique = self._matches(call.func)
            if not hit:
                self._check_unresolvable_call(call, star)
                continue
            verdict = self._verdict(call, unique, patched_at)
            if verdict.migrate:
                migratable[call] = verdict
            else:
                self.record(call, "reported", verdict.reason, verdict.message)
        return migratable, called

    def _verdict(self, call: cst.Call, unique: bool, patched_at: int | None) -> Verdict:
        if self.is_suppressed(call):
            return Verdict(False, None, SUPPRESSED_MESSAGE)
        if not unique:
            return Verdict(
                False,
                "ambiguous-callee",
                f"this name can also refer to something other than {self._target_text()}",
            )
        if patched_at is not None:
            return Verdict(
                False, "monkeypatched", f"line {patched_at} replaces {self._target_text()} in this module"
            )
        return self.check_call(call)

    def _check_unresolvable_call(self, call: cst.Call, star: bool) -> None:
        """Report calls that might be the target but cannot be resolved (star import, ``getattr``)."""
        if star and self._is_unresolved_short_name(call.func):
            self.record(call, "reported", "star-import", self._star_message())
        elif self._is_dynamic_lookup(call):
            self.record(call, "reported", "dynamic-callee", self.dynamic_lookup_message())

    def _is_unresolved_short_name(self, node: cst.CSTNode) -> bool:
        return isinstance(node, cst.Name) and node.value == self.SHORT_NAME and not self._qualified(node)

    def _is_dynamic_lookup(self, call: cst.Call) -> bool:
        """``getattr(module, name)`` where name is not a literal, or is the literal short name."""
        builtins_getattr = QualifiedName("builtins.getattr", QualifiedNameSource.BUILTIN)
        if builtins_getattr not in self._qualified(call.func) or len(call.args) < 2:
            return False
        if not self._resolves_to_module(call.args[0].value):
            return False
        attribute = literal_string(call.args[1].value, decode_bytes=True)
        return attribute is None or attribute == self.SHORT_NAME

    def _report_value_references(
        self, references: Iterable[cst.Name | cst.Attribute], called: set[cst.CSTNode], star: bool
    ) -> None:
        """A target used as a value escapes this module's view: report it, never rewrite it."""
        for ref in references:
            if ref in called or self._expression_contexts.get(ref) is not (ExpressionContext.LOAD):
                continue
            if self._matches(ref)[0]:
                parent = self._parents.get(ref)
                inspected = isinstance(parent, cst.Attribute) and parent.value is ref
                self.record(ref, "reported", "callee-as-value", self.value_reference_message(inspected))
            elif star and self._is_unresolved_short_name(ref):
                self.record(ref, "reported", "star-import", self._star_message())

    def _plan_import_rewrites(
        self,
        import_froms: Iterable[cst.ImportFrom],
        migratable: Mapping[cst.Call, Verdict],
        exported: Collection[str],
    ) -> set[cst.CSTNode]:
        """Retarget ``from <module> import <name>`` aliases whose every use is a migratable call.

        Returns the callee nodes covered that way (their calls stay as written).
        """
        migratable_callees = {call.func for call in migratable}
        covered: set[cst.CSTNode] = set()
        for imp in import_froms:
            if self._absolute_module(imp) not in self.SOURCE_MODULES or isinstance(imp.names, cst.ImportStar):
                continue
            for index, alias in enumerate(imp.names):
                if alias.evaluated_name != self.SHORT_NAME:
                    continue
                uses = self._uses_of_binding(imp, alias.evaluated_alias or alias.evaluated_name)
                bound_name = alias.evaluated_alias or alias.evaluated_name
                if uses and uses <= migratable_callees and bound_name not in exported:
                    self._import_rewrites.setdefault(imp, set()).add(index)
                    covered |= uses
        return covered

    def _uses_of_binding(self, imp: cst.ImportFrom, bound_name: str) -> set[cst.CSTNode]:
        scope = self.get_metadata(ScopeProvider, imp, None)
        if scope is None:
            return set()
        uses: set[cst.CSTNode] = set()
        for assignment in scope.assignments[bound_name]:
            if isinstance(assignment, ImportAssignment) and assignment.node is imp:
                uses |= {access.node for access in assignment.references}
        return uses

    def _place_attribute_rewrite(self, call: cst.Call) -> bool:
        """Schedule ``<REPLACEMENT_MODULE>.<name>(...)`` for ``call`` unless ``db_utils`` is taken there."""
        if self._db_utils_is_taken(call):
            self.record(
                call,
                "reported",
                "name-conflict",
                f"`db_utils` is bound to something else here; rename it to let {self._replacement_text()} in",
            )
            return False
        self._call_rewrites.add(call)
        return True

    def _db_utils_is_taken(self, node: cst.CSTNode) -> bool:
        scope = self.get_metadata(ScopeProvider, node, None)
        return name_is_taken(scope, self.REPLACEMENT_MODULE.split(".")[0])

    def _line(self, node: cst.CSTNode) -> int:
        return int(self.get_metadata(PositionProvider, node).start.line)

    def _target_text(self) -> str:
        return sorted(self.TARGETS)[0]

    def _replacement_text(self) -> str:
        return f"{self.REPLACEMENT_MODULE}.{self.SHORT_NAME}"

    def _star_message(self) -> str:
        modules = " or ".join(sorted(self.SOURCE_MODULES))
        return f"{self.SHORT_NAME} may come from a star import of {modules}; import it by name to migrate"

    # ----- rewriting ----------------------------------------------------------------------------------

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if original_node not in self._call_rewrites:
            return updated_node
        self._rewritten_callees.append(original_node.func)
        removals = self._schedule_import_removal(original_node.func)
        if removals and self._imported_in_blocks_only(original_node.func):
            # Imported where the original was, the drop-in is bound exactly when the driver was: a
            # conditional or lazy import stays conditional or lazy.
            self._nested_removals.update(removals)
        else:
            AddImportsVisitor.add_needed_import(self.context, self.REPLACEMENT_MODULE)
        rewritten = updated_node.with_changes(func=dotted(self._replacement_text()))
        return self._realigned(original_node, rewritten)

    def _realigned(self, original: cst.Call, rewritten: cst.Call) -> cst.Call:
        """Arguments aligned under the opening parenthesis (``connect(host=h,`` / ``        port=p)``)
        move with it, by the difference in the callee's length: otherwise the rewrite leaves them
        misaligned (pycodestyle E128, which flake8 reports by default)."""
        args = original.args
        if (
            len(args) < 2
            or isinstance(original.whitespace_before_args, cst.ParenthesizedWhitespace)  # hanging indent
            or not any(_breaks_line(arg.comma) for arg in args)
        ):
            return rewritten
        first = self.get_metadata(PositionProvider, args[0]).start
        columns = [
            self.get_metadata(PositionProvider, arg).start.column
            for previous, arg in pairwise(args)
            if _breaks_line(previous.comma)
        ]
        if any(column != first.column for column in columns):
            return rewritten  # a hanging indent, or a layout of the user's own: left alone
        delta = len(self._replacement_text()) - len(cst.Module([]).code_for_node(original.func))
        if delta == 0:
            return rewritten
        moved = [
            arg.with_changes(comma=_shifted(arg.comma, delta)) if _breaks_line(arg.comma) else arg
            for arg in rewritten.args
        ]
        return rewritten.with_changes(args=moved)

    def _imported_in_blocks_only(self, callee: cst.CSTNode) -> bool:
        """Whether every binding of ``callee``'s root name is an ``import`` inside a block, none at the
        module's top level."""
        root = callee
        while isinstance(root, cst.Attribute):
            root = root.value
        scope = self.get_metadata(ScopeProvider, root, None)
        if not isinstance(root, cst.Name) or scope is None:
            return False
        assignments = list(scope[root.value])
        return bool(assignments) and all(
            isinstance(assignment, ImportAssignment)
            and isinstance(assignment.node, cst.Import)
            and not self._at_top_level(assignment.node)
            for assignment in assignments
        )

    def _at_top_level(self, statement: cst.CSTNode) -> bool:
        line = self._parents.get(statement)
        return line is not None and isinstance(self._parents.get(line), cst.Module)

    def _schedule_import_removal(self, callee: cst.CSTNode) -> list[tuple[str, str | None, str | None]]:
        """Note the imports ``callee`` used; they are removed at the end only if nothing else uses them.

        LibCST's helper works out which imports a node refers to, but queues them for the stock
        RemoveImportsVisitor, which drops comments with the line; so it is run on a private scratch and its
        findings are applied by :class:`CommentKeepingRemoveImports` in ``transform_module_impl``.
        """
        private = replace(self.context, scratch={}, warnings=[])
        RemoveImportsVisitor.remove_unused_import_by_node(private, callee)
        removals: list[tuple[str, str | None, str | None]] = private.scratch.get(
            RemoveImportsVisitor.CONTEXT_KEY, []
        )
        self._removals.extend(removals)
        return removals

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        tree = super().transform_module_impl(tree)
        if self._nested_removals:
            tree = tree.visit(ImportNextToNested(self._nested_removals, self.REPLACEMENT_MODULE))
        patched = self.options.patched_imports.get(self.context.full_module_name or "", frozenset())
        removals = [removal for removal in self._removals if _bound_name(removal) not in patched]
        kept_in_use = self._names_kept_in_use(removals) if removals else None
        known: list[tuple[str, str | None, str | None]] = []
        unknown = removals
        if kept_in_use is not None:
            known, unknown = unused_after_calls_rewritten(
                {scope for scope in self.metadata[ScopeProvider].values() if isinstance(scope, Scope)},
                removals,
                self._rewritten_callees,
                kept_in_use,
                self.context.full_package_name,
            )
        for batch in removal_batches(known):
            tree = tree.visit(KnownUnusedImports(self.context, batch))
        for batch in removal_batches(unknown):
            tree = CommentKeepingRemoveImports(self.context, batch).transform_module(tree)
        if self._nested_removals or self._import_rewrites:
            tree = place_nested_imports(tree, self.REPLACEMENT_MODULE, self.options.first_party)
        kept = {_bound_name(removal) for removal in self._removals} & patched
        return mark_kept_imports(tree, kept) if kept else tree

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        self._strings.append(node.value)

    def _names_kept_in_use(self, removals: list[tuple[str, str | None, str | None]]) -> set[str] | None:
        """Names RemoveImportsVisitor never removes: ``__all__`` exports (read in visit_Module) and names in
        string annotations, looked for only in a module with a string mentioning one of the names (a full
        pass over the module otherwise). None without the module's metadata: then LibCST's own removal
        decides."""
        wrapper = self.context.wrapper
        if wrapper is None:
            return None
        kept = set(self._exported)
        names = {_bound_name(removal).partition(".")[0] for removal in removals}
        if any(name in text for text in self._strings for name in names):
            annotations = GatherNamesFromStringAnnotationsVisitor(self.context)
            wrapper.visit(annotations)
            kept.update(annotations.names)
        return kept

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom) -> cst.ImportFrom:
        rewritten = self._import_rewrites.get(original_node)
        if not rewritten or isinstance(updated_node.names, cst.ImportStar):
            return updated_node
        if len(rewritten) == len(updated_node.names):
            # Every name moves: retarget the statement in place, which keeps its comments and position.
            module = dotted(self.REPLACEMENT_MODULE)
            return updated_node.with_changes(module=module, relative=())
        names = updated_node.names
        kept = [alias for index, alias in enumerate(names) if index not in rewritten]
        if updated_node.lpar is None:
            # Without parentheses a trailing comma is a syntax error.
            kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        elif len(names) - 1 in rewritten:
            kept[-1] = kept[-1].with_changes(comma=closing_comma(kept[-1].comma, names[-1].comma))
        return updated_node.with_changes(names=kept)

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.FlattenSentinel[cst.SimpleStatementLine]:
        """Where only some names of a ``from`` import moved, add their new import right below it."""
        moved: list[cst.ImportAlias] = []
        for statement in original_node.body:
            if not isinstance(statement, cst.ImportFrom) or isinstance(statement.names, cst.ImportStar):
                continue
            rewritten = self._import_rewrites.get(statement, set())
            if rewritten and len(rewritten) < len(statement.names):
                moved += [statement.names[index] for index in sorted(rewritten)]
        if not moved:
            return updated_node
        aliases = [alias.with_changes(comma=cst.MaybeSentinel.DEFAULT) for alias in moved]
        new_import = cst.ImportFrom(module=dotted(self.REPLACEMENT_MODULE), names=aliases)
        new_line = cst.SimpleStatementLine(body=[new_import], trailing_whitespace=trailing_comment_of(moved))
        return cst.FlattenSentinel([updated_node, new_line])


def _bound_name(removal: tuple[str, str | None, str | None]) -> str:
    """The name an import scheduled for removal binds: ``import urllib.request`` binds ``urllib``,
    ``from urllib import request as r`` binds ``r``."""
    module, obj, alias = removal
    return alias or obj or module.partition(".")[0]
