"""The contract every poolshift rule follows.

A rule is a LibCST ``VisitorBasedCodemodCommand`` (so ``python -m libcst.tool codemod`` can run it too)
with a few class attributes the engine reads, and one duty beyond rewriting: it records a :class:`Site`
for *every* candidate call it sees, rewritten or not. A candidate that is left alone always carries a
stable reason code, because "correctness beats coverage" only works if the user can see what was skipped.

Rules find call sites through LibCST's ``QualifiedNameProvider`` (resolved imports and aliases), never by
matching text; ``PREFILTER`` strings (plus the project's legacy helper names, for a rule that declares
``LEGACY_HELPER_PREFILTER``) exist only so the runner can skip files that cannot contain a candidate
without parsing them.

Rules are discovered automatically: any module (or package) in ``codemods/rules/`` that defines a
subclass of :class:`PoolshiftRule` with a ``RULE_ID`` is registered (see ``codemods.rules.all_rules``).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import libcst as cst
from libcst.codemod import CodemodContext, VisitorBasedCodemodCommand
from libcst.metadata import PositionProvider, QualifiedNameProvider, ScopeProvider

from codemods.suppressions import (
    UNUSED_CODE,
    UNUSED_RULE,
    Suppression,
    find_suppressions,
    suppressed_at,
)

#: ``context.scratch`` key: False when the file has no suppression comment (the rule then skips looking).
SUPPRESSIONS_KEY = "poolshift.suppressions"
#: The message of a site a suppression comment keeps as it is.
SUPPRESSED_MESSAGE = "kept as is by a `# poolshift: ignore` comment"
SiteStatus = Literal["migrated", "migratable", "reported", "suppressed"]


@dataclass(frozen=True)
class Site:
    """One candidate call site and what the rule did (or would do) about it.

    ``status`` is ``migrated`` when the file was rewritten, ``migratable`` in a dry run (scan, diff) for a
    site the rule would rewrite, ``suppressed`` for a site a ``# poolshift: ignore`` comment keeps as it
    is (see :mod:`codemods.suppressions`), and ``reported`` for a site left alone; ``reason`` is then a
    reason code documented on the rule's page, ``migration_guide/rules/<RULE_ID>.md``. ``reason`` may
    also be set on a migrated site when the rule applied only its conservative variant (e.g. compat
    instead of idiomatic) and wants to say why.
    """

    rule: str
    path: str
    line: int
    column: int
    status: SiteStatus
    reason: str | None = None
    message: str = ""
    phase: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def unused_suppression(cls, path: str, suppression: Suppression) -> Site:
        """The report of a ``# poolshift: ignore`` comment that kept no site from being rewritten."""
        return cls(
            rule=UNUSED_RULE,
            path=path,
            line=suppression.line,
            column=suppression.column,
            status="reported",
            reason=UNUSED_CODE,
            message=suppression.unused_message(),
        )


@dataclass(frozen=True)
class Verdict:
    """What a rule decided about one candidate: rewrite it (``migrate``) or report it, and why.

    ``reason`` is one of the rule's ``REASON_CODES``; with ``migrate`` it tells the user something about a
    rewrite they should know (PS201's ``conn-stored``).
    """

    migrate: bool
    reason: str | None = None
    message: str = ""


@dataclass(frozen=True)
class RuleOptions:
    """Project-wide knowledge a rule may need, gathered by the runner before any file is transformed.

    ``legacy_helpers`` are fully qualified names of the home-grown connection helpers
    (``app.db.get_postgres_connection``), from ``[tool.poolshift]`` or discovered in the tree.
    ``remaining_legacy_references`` is filled in by the runner for the cleanup rule: every place outside
    the helper's own definition that still refers to a legacy helper, across the whole tree.
    ``legacy_helper_differences`` is the runner's whole-tree analysis (helper -> what differs from the shim;
    empty: equivalent), so a call in another module than the helper's can be judged; a helper missing
    there is looked up from the file being transformed.
    """

    legacy_helpers: tuple[str, ...] = ()
    remaining_legacy_references: tuple[str, ...] = ()
    legacy_helper_differences: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: Names of project modules' attributes that are a standard module (``pkg.utils.sqlite3`` ->
    #: ``sqlite3``), from the runner's first pass over the whole project: ``from pkg.utils import sqlite3``
    #: then resolves to the module the project's own code shows it is.
    module_aliases: Mapping[str, str] = field(default_factory=dict)
    #: The same analysis limited to the helper's contract (a connection, or None when connecting fails),
    #: connection parameters aside: what PS101 needs when the caller has ``except`` blocks.
    legacy_helper_contracts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: The helpers the cleanup may delete once unreferenced; None: every legacy helper. The runner passes
    #: the configured ones and those named ``get_postgres_connection``: a helper found only by what it
    #: does may be public API that nothing in the tree calls.
    removable_helpers: tuple[str, ...] | None = None
    #: The project's own top-level module names: an import of one of them is first party, so a new import
    #: is placed the way isort and ruff sort (:mod:`codemods.cst.imports.placement`).
    first_party: frozenset[str] = frozenset()
    #: Some file of the project imports psycopg2 (the runner's first pass): PS103 then reports the
    #: ``.as_string(x)``/``.prepare(x)`` calls of modules that do not, where a psycopg2 object handed over
    #: from elsewhere may be the receiver; in a project without psycopg2 they are nobody's concern.
    psycopg2_imported: bool = False
    #: Module -> names bound in it that a string elsewhere in the tree reaches into (a test's
    #: ``monkeypatch.setattr("app.db.psycopg2.connect", fake)``; the runner's first pass, see
    #: ``first_pass.patched_imports``): a rewrite keeps those imports even when it leaves them unused.
    patched_imports: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class FirstPassView:
    """What the engine's ``ast`` first pass shows a rule about one file (see ``first_pass_wants``).

    ``tree`` is CPython's parse of ``text`` (the text rules see); ``resolve`` maps a dotted name as
    written (``ext.register_type``) to what it may be after the file's imports and the project's module
    aliases (``{"psycopg2.extensions.register_type"}``; ``"<unknown>"`` for a binding that is not an
    import, an empty set for an unbound name). Resolution is over-inclusive, like the first pass's.
    """

    tree: ast.Module
    text: str
    package: str
    resolve: Callable[[str], set[str]]


def dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` for an ``ast`` chain of attributes on a name; None for anything else (a call, ...)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def through_module_aliases(name: str, aliases: Mapping[str, str]) -> str:
    """``name`` with its longest prefix that a project module re-binds replaced (``pkg.utils.sqlite3``)."""
    if not aliases:
        return name
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in aliases:
            return ".".join([aliases[prefix], *parts[end:]])
    return name


class PoolshiftRule(VisitorBasedCodemodCommand):
    """Base class of all rules: metadata for the engine plus site recording."""

    RULE_ID: ClassVar[str] = ""
    NAME: ClassVar[str] = ""
    DESCRIPTION: str = ""  # LibCST's CodemodCommand declares it as an instance attribute
    #: "safe": every rewrite keeps behavior by construction; "guarded": rewrites only sites the rule proves
    #: safe and reports the rest.
    SAFETY: ClassVar[Literal["safe", "guarded"]] = "guarded"
    #: The rule may only change a file if one of these strings occurs in its text.
    PREFILTER: ClassVar[Sequence[str]] = ()
    #: The rule looks at the project's legacy helpers, whatever their names: the runner adds their short
    #: names (configured or discovered) to ``PREFILTER``.
    LEGACY_HELPER_PREFILTER: ClassVar[bool] = False
    #: Reason codes this rule can emit; each is documented in migration_guide/rules/<RULE_ID>.md.
    REASON_CODES: ClassVar[Mapping[str, str]] = {}
    #: The cleanup rule runs after all others and only in the final phase.
    RUNS_LAST: ClassVar[bool] = False
    #: False: an opt-in rule, run only when ``select`` (``[tool.poolshift]`` or ``--select``) names its ID.
    DEFAULT_ENABLED: ClassVar[bool] = True
    #: True: whenever any phase runs, the rule runs on every non-excluded file of the tree, not only that
    #: phase's files (for rewrites that are correct before and after the others, and that code in one
    #: phase may need because of another phase's rewrite).
    TREE_WIDE: ClassVar[bool] = False

    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider, ScopeProvider)

    @classmethod
    def first_pass_wants(cls, view: FirstPassView) -> bool:
        """Whether this file needs the rule's LibCST pass, judged from the ``ast`` first pass alone.

        Asked only for a file whose text holds one of the rule's ``PREFILTER`` words and only in a file
        CPython compiles; False means the rule has nothing to record or rewrite there, so the file is
        not parsed with LibCST for it. It must never be False for a file the rule would change or
        report: when in doubt, True (the default, which leaves the decision to ``PREFILTER`` alone). The
        answer is cached by the file's content, package and the project aliases its imports reach, so
        it must depend on nothing else. A file with a suppression comment always runs the rule, which
        judges unused suppressions.
        """
        return True

    @classmethod
    def applies_to_project(cls, options: RuleOptions) -> bool:
        """Whether ``first_pass_wants`` may send any file of this project to the rule at all.

        The whole-project half of the first pass's question, kept apart so that ``first_pass_wants``
        stays a function of one file (its answers are cached per file): PS103's method calls matter
        only in a project that imports psycopg2 somewhere. Calls of declared ``TARGETS`` and suppression
        comments are not affected.
        """
        return True

    @classmethod
    def ambiguous_module_message(cls, written: str, target: str) -> str:
        """What the report says of ``written`` (``sqlite3.connect``) when it may be ``target`` but where
        its first name comes from cannot be known (``ambiguous-module``, from the runner's first pass)."""
        module = target.rpartition(".")[0]
        first = written.partition(".")[0]
        return (
            f"{written} is {target} only if `{first}` is the {module} module, and what `{first}` is "
            f"bound to cannot be followed here: left as is. If it is {module} (not a module chosen at "
            f"run time on purpose), import {module} by name to migrate"
        )

    def __init__(self, context: CodemodContext, options: RuleOptions | None = None) -> None:
        super().__init__(context)
        self.options = options or RuleOptions()
        self.sites: list[Site] = []
        self._suppressions: list[Suppression] | None = None

    def is_suppressed(self, node: cst.CSTNode) -> bool:
        """Whether a ``# poolshift: ignore`` comment keeps this rule from rewriting ``node``.

        A rule asks before it decides to rewrite, and records a suppressed site as ``reported`` with the
        reason it would otherwise have (the transform marks it ``suppressed``). The comments are read from
        the tree the rule is looking at, so lines shifted by an earlier rule's edits still match.
        """
        if self._suppressions is None:
            wrapper = self.context.wrapper
            marked = self.context.scratch.get(SUPPRESSIONS_KEY, True)  # the transform says if any exist
            code = wrapper.module.code if wrapper is not None and marked else ""
            self._suppressions = find_suppressions(code)
        if not self._suppressions:
            return False
        line = self.get_metadata(PositionProvider, node).start.line
        return suppressed_at(self._suppressions, line, self.RULE_ID)

    def record(
        self,
        node: cst.CSTNode,
        status: Literal["migrated", "reported"],
        reason: str | None = None,
        message: str = "",
    ) -> None:
        """Record a site at ``node``'s position (``migrated`` becomes ``migratable`` on dry runs)."""
        if reason is not None and reason not in self.REASON_CODES:
            raise ValueError(f"{self.RULE_ID}: undeclared reason code {reason!r}")
        position = self.get_metadata(PositionProvider, node).start
        self.sites.append(
            Site(
                rule=self.RULE_ID,
                path=self.context.filename or "<string>",
                line=position.line,
                column=position.column + 1,
                status=status,
                reason=reason,
                message=message,
            )
        )
