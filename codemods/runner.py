"""The runner: text prefilter, the ``ast`` first pass, cached and guarded transforms, phases, writes.

Cost model (the reason for the shape of this module): most files of a large tree contain no candidate at
all. The parent process reads each file's bytes once and checks the rules' PREFILTER strings on the raw
bytes; a file that may hold a call of a redirect rule's targets then goes through the first pass
(:mod:`codemods.first_pass`, the C parser), and only a file with a resolved candidate (or one a
legacy-helper rule must see) is decoded, parsed with LibCST and transformed, in worker processes with a
memory cap. Whole-project facts (which project module re-exports which standard module) come from the
first pass once per run. Read-only runs reuse earlier outcomes from :mod:`codemods.cache`. Results come
back in submission order, so reports and diffs are deterministic whatever ``-j`` is.
"""

from __future__ import annotations

import ast
import os
import stat
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TextIO

from libcst.codemod import CodemodContext

from codemods.cache import ResultCache, content_key, digest
from codemods.detached import detached_sites
from codemods.first_pass import (
    FileFacts,
    TargetSet,
    binding_resolver,
    parse_text,
    patched_imports,
    project_module_aliases,
    scan_source,
)
from codemods.legacy_helpers.discovery import prefilter_names
from codemods.legacy_helpers.references import find_legacy_references
from codemods.limits import DEFAULT_LIMITS, FileTimeout, Limits, cap_memory, time_limit
from codemods.plan import Phase, Plan
from codemods.project import FileStore, Project, decoded_sources
from codemods.rules._redirect import RedirectCallRule
from codemods.rules.base import FirstPassView, PoolshiftRule, RuleOptions, Site
from codemods.rules.psycopg2_c_api import imports_psycopg2
from codemods.suppressions import MARKER
from codemods.transform import (
    FileResult,
    PositionMap,
    SourceError,
    decode_source,
    rules_text,
    transform_bytes,
)

__all__ = [
    "UNASSIGNED",
    "FileOutcome",
    "RunResult",
    "atomic_write",
    "phases_for_migrate",
    "phases_up_to",
    "run",
]

UNASSIGNED = "unassigned"
#: Below this many bytes to parse, starting worker processes costs more than it saves.
MIN_BYTES_FOR_POOL = 32 * 1024
#: Errors that mean a per-file limit was reached (codemods.limits), not that the file or a rule is at fault.
LIMIT_CODES = frozenset({"timeout", "memory-limit", "file-too-large", "too-deeply-nested"})

_SUPPRESSION_MARKER = MARKER.encode()


@dataclass
class FileOutcome:
    """One file's result within one phase; ``written`` once the new bytes are on disk."""

    result: FileResult
    phase: str
    written: bool = False


@dataclass
class RunResult:
    project: Project
    outcomes: list[FileOutcome] = field(default_factory=list)
    files_read: int = 0
    #: Files the ``ast`` first pass looked at (computed, not from the cache).
    files_first_pass: int = 0
    #: Files parsed with LibCST (the expensive step).
    files_parsed: int = 0
    #: Files whose outcome came from the cache.
    files_cached: int = 0
    #: Final bytes per path when different from the bytes on disk at the start (for --diff).
    originals: dict[str, bytes] = field(default_factory=dict)
    finals: dict[str, bytes] = field(default_factory=dict)

    @property
    def sites(self) -> list[Site]:
        return [site for outcome in self.outcomes for site in outcome.result.sites]

    @property
    def errors(self) -> list[FileOutcome]:
        return [outcome for outcome in self.outcomes if outcome.result.error]


# ---------------------------------------------------------------------------------------------------------
# Transforming files (in worker processes)


@dataclass(frozen=True)
class _Job:
    path: str
    data: bytes
    rules: tuple[type[PoolshiftRule], ...]
    options: RuleOptions
    dry_run: bool
    module_name: str
    package_name: str
    verify_idempotent: bool
    #: The file as it was on disk when ``data`` is an earlier phase's output, so sites can be mapped back.
    on_disk: bytes | None = None
    limits: Limits = DEFAULT_LIMITS


def _transform_job(job: _Job) -> FileResult:
    """Transform one file and, when the output will be written or diffed, insist that a rerun is a no-op.

    A rule that keeps finding work in its own output would keep changing the user's code on every run;
    that is a rule bug, and the file is left alone rather than rewritten twice differently. (Inventories
    skip the second run: they write nothing, and it doubles the cost of every file with a candidate.)
    """

    try:
        return _transform_checked(job)
    except FileTimeout as exc:  # the timer fired between the transform's own handlers and here
        return FileResult(job.path, job.data, None, [], "timeout", str(exc))


def _transform_checked(job: _Job) -> FileResult:
    def transform(data: bytes, dry_run: bool) -> FileResult:
        # Each pass has the whole time limit: the check of a rewrite must not make a file that scan
        # judged within the limit run out of time in migrate.
        with time_limit(job.limits.time_s):
            return transform_bytes(
                data, job.rules, path=job.path, options=job.options, dry_run=dry_run,
                module_name=job.module_name, package_name=job.package_name, limits=job.limits,
            )  # fmt: skip

    result = transform(job.data, job.dry_run)
    if result.output is not None and job.verify_idempotent:
        again = transform(result.output, True)
        if again.error in LIMIT_CODES:  # the check ran out of time or memory: say that, not "a bug"
            return FileResult(job.path, job.data, None, [], again.error, again.error_detail)
        if again.output is not None or again.error is not None:
            detail = f"a second run changed the output again ({again.error or 'different bytes'})"
            return FileResult(job.path, job.data, None, [], "not-idempotent", detail)
    if job.on_disk is not None and result.sites:
        result.sites = _sites_on_disk(result.sites, job.on_disk, job.data)
    return result


def _sites_on_disk(sites: list[Site], on_disk: bytes, data: bytes) -> list[Site]:
    """Sites found in an earlier phase's output, moved to where they are in the user's file."""
    try:
        positions = PositionMap(rules_text(decode_source(on_disk)), rules_text(decode_source(data)))
    except SourceError:
        return sites  # the file on disk could not be decoded: nothing better to point at
    return [positions.site(site) for site in sites]


def _needles(
    rule: type[PoolshiftRule], legacy_names: Sequence[str], *, applies: bool = True
) -> tuple[bytes, ...]:
    """The strings one of which a file must contain for ``rule`` to have a candidate there.

    A rule whose ``first_pass_wants`` cannot send it any file of this project (``applies`` False) only
    has its ``TARGETS`` calls to look for, and those need the words naming a target (see _target_words).
    """
    words = rule.PREFILTER if applies else _target_words(rule)
    needles = [*words, *(legacy_names if rule.LEGACY_HELPER_PREFILTER else ())]
    return tuple(dict.fromkeys(needle.encode("utf-8") for needle in needles))


def _target_words(rule: type[PoolshiftRule]) -> tuple[str, ...]:
    """The ``PREFILTER`` words a call of one of the rule's ``TARGETS`` needs: those naming a part of a
    target (a target is reached through an import, which names its module; a project alias adds its own
    word). PS103's method names (``as_string``, ``prepare``) are for its ``first_pass_wants`` instead.
    A rule without targets keeps every word."""
    parts = {part for target in _targets_of(rule) for part in target.split(".")}
    return tuple(word for word in rule.PREFILTER if word in parts) if parts else tuple(rule.PREFILTER)


class _Progress:
    """A one-line counter on stderr (files done / total, sites so far), only for a human watching (stderr
    is a TTY) and only once a run has lasted a second; ``None`` as the stream turns it off (``--quiet``)."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total = total
        self.stream = stream if stream is not None and stream.isatty() else None
        self.started = time.monotonic()
        self.shown = False
        self.done = 0
        self.sites = 0
        self._last = 0.0

    def advance(self, files: int = 1, sites: int = 0) -> None:
        self.done += files
        self.sites += sites
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self.started < 1.0 or (now - self._last < 0.1 and self.done < self.total):
            return
        self._last = now
        self.stream.write(f"\rpoolshift: {self.done}/{self.total} files, {self.sites} sites")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.stream is not None and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _execute(jobs: list[_Job], workers: int, progress: _Progress) -> list[FileResult]:
    """Transform ``jobs``; results in job order whatever the completion order."""
    results: list[FileResult | None] = [None] * len(jobs)
    if workers <= 1 or len(jobs) < 2 or sum(len(job.data) for job in jobs) < MIN_BYTES_FOR_POOL:
        for index, job in enumerate(jobs):
            results[index] = _transform_job(job)
            progress.advance(1, len(results[index].sites))  # type: ignore[union-attr]
    else:
        # One job per task, largest file first. A file's cost grows with its size and sizes vary a
        # thousandfold across a real tree, so fixed chunks in path order leave one worker grinding through
        # a chunk of big files while the others idle; largest-first keeps that tail to one file. The
        # per-task overhead (pickling one file's bytes) is tiny next to parsing and analysing the file.
        order = sorted(range(len(jobs)), key=lambda index: -len(jobs[index].data))
        broken = _execute_in_pool(jobs, order, workers, results, progress)
        # A worker that died (killed at its memory cap, a crash in native code) takes the pool down with
        # it; the files it left unfinished are retried one per fresh worker, so only the culprit fails.
        for index in broken:
            if _execute_in_pool(jobs, [index], 1, results, progress):
                detail = "the worker process analysing this file died (memory limit or a crash)"
                results[index] = FileResult(
                    jobs[index].path, jobs[index].data, None, [], "memory-limit", detail
                )
                progress.advance(1)
    return [result for result in results if result is not None]


def _execute_in_pool(
    jobs: list[_Job], order: list[int], workers: int, results: list[FileResult | None], progress: _Progress
) -> list[int]:
    """Run ``order``'s jobs in a fresh capped pool; returns the indexes a broken pool left unfinished."""
    memory = jobs[order[0]].limits.memory_bytes
    broken: list[int] = []
    with ProcessPoolExecutor(
        max_workers=min(workers, len(order)), initializer=cap_memory, initargs=(memory,)
    ) as pool:
        futures = {pool.submit(_transform_job, jobs[index]): index for index in order}
        for future in as_completed(futures):
            index = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool:
                broken.append(index)
                continue
            except Exception as exc:  # e.g. an unpicklable result: that file's error
                job = jobs[index]
                result = FileResult(
                    job.path, job.data, None, [], "internal-error", f"{type(exc).__name__}: {exc}"
                )
            results[index] = result
            progress.advance(1, len(result.sites))
    return sorted(broken)


# ---------------------------------------------------------------------------------------------------------
# Writing


def atomic_write(path: Path, data: bytes, expected: bytes) -> None:
    """Replace ``path``'s content with ``data`` atomically, keeping its permission bits.

    The temporary file lives in the same directory so ``os.replace`` is a rename on one filesystem:
    readers see the old file or the new one, never half of either. If the file changed since it was read
    (an editor, another run), nothing is written.
    """
    if path.read_bytes() != expected:
        raise OSError(f"{path} changed on disk during the run")
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".poolshift-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------------
# Phases


@dataclass
class _State:
    """The project's file contents as this run sees them (after earlier phases, when chaining)."""

    root: Path
    #: The bytes read so far (while loading, too) and, in read-only runs, the recorded facts of unchanged
    #: files; its NeedleIndex is shared with project loading, so each word is searched once per file and
    #: run, whichever phase, rule or lookup asks (see codemods.needles).
    files: FileStore
    on_disk: dict[str, bytes] = field(default_factory=dict)
    current: dict[str, bytes] = field(default_factory=dict)
    #: Files the TREE_WIDE rules already ran on in this run (they run on each file once per run).
    tree_wide_done: set[str] = field(default_factory=set)

    def contains(self, path: str, data: bytes, needles: Sequence[bytes]) -> bool:
        """Whether ``data`` (``path``'s current bytes) holds one of ``needles``."""
        return self.files.needles.contains(path, data, needles)

    def mentions(self, path: str, needles: Sequence[bytes]) -> bool:
        """Whether ``path``'s current bytes hold one of ``needles``: from recorded facts when the file is
        unchanged and unread (see FileStore), else from its bytes (False when it cannot be read)."""
        if path not in self.current:  # (a file read since answers from its bytes: recorded_answer is None)
            answer = self.files.recorded_answer(path, needles)
            if answer is not None:
                return answer
        data = self.read(path)
        return data is not None and self.contains(path, data, needles)

    def read(self, path: str) -> bytes | None:
        if path not in self.current:
            data = self._fresh(path)
            if data is None:
                return None
            self.on_disk[path] = data
            self.current[path] = data
        return self.current[path]

    def _fresh(self, path: str) -> bytes | None:
        """The bytes read earlier (while loading), if the file's stat says it has not changed since."""
        entry = self.files.snapshot.get(path)
        if entry is not None:
            try:
                info = os.stat(f"{self.root}/{path}")
            except OSError:
                return None
            if (info.st_mtime_ns, info.st_size) == (entry[0].st_mtime_ns, entry[0].st_size):
                return entry[1]
        return self.files.reread(path)


def _references(project: Project, state: _State, cache: ResultCache) -> tuple[str, ...]:
    if not project.legacy_helpers:
        return ()
    needles = [name.encode() for name in prefilter_names(project.legacy_helpers)]
    files: dict[str, bytes] = {}
    for path in project.all_files:
        data = state.read(path) if state.mentions(path, needles) else None
        if data is not None:
            files[path] = data
    sources = decoded_sources(files)
    names = {path: project.module_of(path)[0] for path in sources}
    return find_legacy_references(sources, names, project.legacy_helpers, cache)


def _asks_first_pass(rule: type[PoolshiftRule]) -> bool:
    """Whether ``rule`` judges from the ``ast`` first pass if a file needs it (else its PREFILTER decides)."""
    defined_in = next(klass for klass in rule.__mro__ if "first_pass_wants" in vars(klass))
    return defined_in is not PoolshiftRule


def _targets_of(rule: type[PoolshiftRule]) -> frozenset[str]:
    """The callees a rule declares (redirect rules' ``TARGETS``); empty for rules the first pass leaves be."""
    targets: object = getattr(rule, "TARGETS", frozenset())
    return frozenset(targets) if isinstance(targets, frozenset) else frozenset()


@dataclass
class _Context:
    """What every phase of one run shares: the first pass's facts, the cache, limits and progress."""

    project: Project
    state: _State
    result: RunResult
    cache: ResultCache
    limits: Limits
    progress: _Progress
    workers: int
    targets: TargetSet = field(default_factory=lambda: TargetSet(frozenset()))
    aliases: dict[str, str] = field(default_factory=dict)
    #: Project modules named like a module holding a target (``pkg/sqlite3.py``): known not to be it.
    look_alike_modules: frozenset[str] = frozenset()
    #: Some file of the project imports psycopg2 (``RuleOptions.psycopg2_imported``).
    psycopg2_imported: bool = False
    patched_imports: dict[str, frozenset[str]] = field(default_factory=dict)
    #: The last file ``ast`` parsed (its bytes, text and tree or error), so the facts with and without
    #: aliases and the rules' first_pass_wants share one parse.
    _parsed: tuple[bytes, str, ast.Module | str] | None = None

    def parse(self, data: bytes) -> tuple[str, ast.Module | str] | None:
        """``data``'s text and CPython's parse (or its message); None when it is too large or undecodable."""
        if self._parsed is not None and self._parsed[0] is data:
            return self._parsed[1:]
        if self.limits.max_bytes and len(data) > self.limits.max_bytes:
            return None
        try:
            text = rules_text(decode_source(data))
        except SourceError:
            return None
        self._parsed = (data, text, parse_text(text))
        return self._parsed[1:]

    def wants(self, path: str, data: bytes, rule: type[PoolshiftRule], aliases: Mapping[str, str]) -> bool:
        """``rule.first_pass_wants`` for ``path``'s current bytes (cached); True when ``ast`` cannot tell."""
        package = self.project.module_of(path)[1]
        key = digest("wants", rule.RULE_ID, content_key(data), package, sorted(aliases.items()))
        cached = self.cache.get("first_pass", key)
        if cached is not None:
            return bool(cached)
        parsed = self.parse(data)
        answer = True
        text, tree = parsed if parsed is not None else ("", "")
        if not isinstance(tree, str):
            try:
                resolve, _ = binding_resolver(tree, text, package, aliases)
                answer = rule.first_pass_wants(FirstPassView(tree, text, package, resolve))
            except RecursionError:
                answer = True  # absurdly nested code: the transform's guards decide
        self.cache.put("first_pass", key, answer)
        return answer

    def facts(self, path: str, data: bytes) -> tuple[FileFacts, dict[str, str]]:
        """The first pass over ``path`` as it is now (``data``), and the project aliases it depends on.

        Facts are computed without the project's aliases first (so the cached answer of a file survives
        changes elsewhere in the tree), and again with the few aliases its imports can reach, if any.
        """
        package = self.project.module_of(path)[1]
        facts = self._facts(data, package, {})
        relevant = facts.relevant_aliases(self.aliases)
        return (self._facts(data, package, relevant) if relevant else facts), relevant

    def _facts(self, data: bytes, package: str, aliases: dict[str, str]) -> FileFacts:
        key = digest(
            "facts", "patch_paths", content_key(data), package, sorted(self.targets.targets),
            sorted(aliases.items()), sorted(self.look_alike_modules),
        )  # fmt: skip
        cached = self.cache.get("first_pass", key)
        if cached is not None:
            return FileFacts.from_json(cached)
        self.result.files_first_pass += 1
        if self.limits.max_bytes and len(data) > self.limits.max_bytes:
            facts = FileFacts(error="file-too-large")
        else:
            try:
                text = rules_text(decode_source(data))
            except SourceError as exc:
                facts = FileFacts(error=exc.code)
            else:
                parsed = self.parse(data)
                facts = scan_source(
                    text,
                    self.targets,
                    package=package,
                    aliases=aliases,
                    project_modules=self.look_alike_modules,
                    parsed=parsed[1] if parsed is not None else None,
                )
        self.cache.put("first_pass", key, facts.to_json())
        return facts


def _first_pass_needles(
    rules: Sequence[type[PoolshiftRule]], aliases: Mapping[str, str]
) -> tuple[bytes, ...]:
    words = [word for rule in rules if _targets_of(rule) for word in _target_words(rule)]
    words += [name.rpartition(".")[2] for name in aliases]
    return tuple(dict.fromkeys(word.encode("utf-8") for word in words))


def _alias_needles(rule: type[PoolshiftRule], aliases: Mapping[str, str]) -> tuple[bytes, ...]:
    """The project names (``pkg.utils.sqlite3`` -> ``sqlite3``) under which one of ``rule``'s target
    modules (or a package of one) may reach a file: only a file naming one may hold its candidate."""
    modules = TargetSet(_targets_of(rule)).modules
    reaching = {
        name: module
        for name, module in aliases.items()
        if any(target == module or target.startswith(module + ".") for target in modules)
    }
    return _first_pass_needles([], reaching)


def _project_facts(context: _Context) -> None:
    """Whole-project facts from the first pass, once per run: which project names are standard modules."""
    redirect_rules = [rule for rule in context.project.rules if _targets_of(rule)]
    if not redirect_rules:
        return
    context.targets = TargetSet(frozenset().union(*(_targets_of(rule) for rule in redirect_rules)))
    needles = _first_pass_needles(redirect_rules, {})
    names_of_modules = {part for module in context.targets.modules for part in module.split(".")}
    context.look_alike_modules = frozenset(
        module
        for module in (context.project.module_of(path)[0] for path in context.project.all_files)
        if module.rpartition(".")[2] in names_of_modules
    )
    facts: dict[str, FileFacts] = {}
    for path in context.project.all_files:
        data = context.state.read(path) if context.state.mentions(path, needles) else None
        if data is not None:
            facts[path] = context.facts(path, data)[0]
    names = {path: context.project.module_of(path)[0] for path in facts}
    context.aliases = project_module_aliases(facts, names, context.targets.modules)
    # Only a file the first pass read (it names a target) has an import a rewrite can remove.
    context.patched_imports = patched_imports(facts, names.values())
    # Every file naming psycopg2 went through the pass above (a word naming PS100's and PS103's targets).
    context.psycopg2_imported = any(imports_psycopg2(file_facts.imports) for file_facts in facts.values())


def _first_pass_sites(rules: Sequence[type[PoolshiftRule]], path: str, facts: FileFacts) -> list[Site]:
    """Candidates no rule can resolve, reported with a reason: ``dynamic-callee``, ``ambiguous-module``."""
    sites: list[Site] = []
    for candidate in facts.candidates:
        if candidate.kind == "resolved":
            continue
        rule = next((rule for rule in rules if candidate.target in _targets_of(rule)), None)
        if rule is None:
            continue
        if candidate.text.startswith("getattr(") and issubclass(rule, RedirectCallRule):
            message = rule(CodemodContext(), RuleOptions()).dynamic_lookup_message()  # the rule's own words
        elif candidate.kind == "dynamic-callee":
            message = (
                f"{candidate.text} may be {candidate.target}, reached through an object or a lookup; "
                "it cannot be resolved, so it is left as is"
            )
        else:
            message = rule.ambiguous_module_message(candidate.text, candidate.target)
        sites.append(
            Site(rule.RULE_ID, path, candidate.line, candidate.column, "reported", candidate.kind, message)
        )
    return sites


def _merge_sites(result: FileResult, extra: list[Site]) -> None:
    """Add first-pass sites a rule did not record itself (a rule's own record wins at a position)."""
    if result.error or not extra:
        return
    seen = {(site.rule, site.line, site.column) for site in result.sites}
    result.sites = sorted(
        [*result.sites, *(site for site in extra if (site.rule, site.line, site.column) not in seen)],
        key=lambda site: (site.line, site.column, site.rule),
    )


#: Project-wide options of which each file's answer depends on a part only, put in that file's key.
_PER_FILE_OPTIONS = frozenset({"module_aliases", "patched_imports"})


def _options_key(options: RuleOptions, limits: Limits) -> str:
    """Every field of ``options`` (a new one is part of the key without anyone remembering it), except
    :data:`_PER_FILE_OPTIONS`: only the part of those a file can reach is in that file's key."""
    values = [
        (item.name, _stable(getattr(options, item.name)))
        for item in fields(options)
        if item.name not in _PER_FILE_OPTIONS
    ]
    return digest(values, limits.max_bytes, limits.time_s)  # time_s: a predicted timeout (limits.py)


def _stable(value: object) -> object:
    """``value`` with mappings and sequences in a repr that does not depend on construction order."""
    if isinstance(value, Mapping):
        return sorted((str(key), _stable(item)) for key, item in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sorted(repr(_stable(item)) for item in value)
    return value


def _cached_result(context: _Context, key: str, path: str, data: bytes) -> FileResult | None:
    raw = context.cache.get("outcomes", key)
    if raw is None:
        return None
    sites = [Site(**site) for site in raw["sites"]]
    return FileResult(path, data, None, sites, raw["error"], raw["detail"])


def _store_result(context: _Context, key: str, result: FileResult) -> None:
    sites = [{**site.to_dict(), "phase": None} for site in result.sites]
    context.cache.put("outcomes", key, {"sites": sites, "error": result.error, "detail": result.error_detail})


def _suppression_may_judge(state: _State, path: str, judge: Sequence[bytes]) -> bool:
    """Whether ``path`` may hold a suppression comment naming one of ``judge``'s words (rules that do not
    apply to the project are still run there, so that an unused suppression is reported)."""
    return bool(judge) and state.mentions(path, (_SUPPRESSION_MARKER,)) and state.mentions(path, judge)


#: A combination of rules' words (see _PhaseFiles._may_any_match): its needles (None: any file may
#: match), the words a suppression comment judges, and every word whose absence rules it out.
_Words = tuple[tuple[bytes, ...] | None, tuple[bytes, ...], tuple[bytes, ...]]


@dataclass
class _PhaseFiles:
    """One phase's files as they are decided: outcomes known without LibCST, and jobs for the rest."""

    context: _Context
    rules: list[type[PoolshiftRule]]
    options: RuleOptions
    dry_run: bool
    chain: bool
    needles: dict[type[PoolshiftRule], tuple[bytes, ...]] = field(default_factory=dict)
    alias_needles: dict[type[PoolshiftRule], tuple[bytes, ...]] = field(default_factory=dict)
    #: Words a rule that does not apply to the project still judges a suppression comment by (its
    #: PREFILTER words beyond ``needles``): the transform reports an unused one only for a rule that ran.
    judge_needles: dict[type[PoolshiftRule], tuple[bytes, ...]] = field(default_factory=dict)
    jobs: list[_Job] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)
    extras: list[list[Site]] = field(default_factory=list)
    decided: dict[int, FileResult] = field(default_factory=dict)  # by position among the phase's files
    options_key: str = ""  # set for read-only runs, whose outcomes are cached
    #: The words of each combination of rules asked about (see _may_any_match), and the last one asked.
    _words: dict[tuple[type[PoolshiftRule], ...], _Words] = field(default_factory=dict)
    _last_words: tuple[tuple[type[PoolshiftRule], ...], _Words] | None = None

    def __post_init__(self) -> None:
        legacy_names = prefilter_names(self.context.project.legacy_helpers)
        for rule in self.rules:
            applies = not _asks_first_pass(rule) or rule.applies_to_project(self.options)
            self.needles[rule] = _needles(rule, legacy_names, applies=applies)
            every = _needles(rule, legacy_names)
            self.judge_needles[rule] = tuple(word for word in every if word not in self.needles[rule])
        self.alias_needles = {rule: _alias_needles(rule, self.context.aliases) for rule in self.rules}
        # Outcomes of read-only runs are cached; a run that writes (or chains phases) always computes.
        self.options_key = (
            _options_key(self.options, self.context.limits) if self.dry_run and not self.chain else ""
        )

    def _may_match(self, rule: type[PoolshiftRule], path: str) -> bool:
        """Byte-level prefilter: a rule with no needle in the file cannot have a candidate there."""
        state = self.context.state
        needles = self.needles[rule]
        if not needles or state.mentions(path, needles):
            return True
        if state.mentions(path, self.alias_needles[rule]):
            return True
        judge = self.judge_needles[rule]
        return _suppression_may_judge(state, path, judge)

    def _may_any_match(self, path: str, rules: tuple[type[PoolshiftRule], ...]) -> bool:
        """:meth:`_may_match` of some of ``rules``, in one question for the common answer (no word at all)."""
        last = self._last_words  # nearly every file asks with the very same tuple (see _rules_per_path)
        words = last[1] if last is not None and last[0] is rules else self._words.get(rules)
        if words is None:
            if not all(self.needles[rule] for rule in rules):
                words = None, (), ()  # a rule without words may match any file
            else:
                every = [word for rule in rules for word in (*self.needles[rule], *self.alias_needles[rule])]
                judging = [word for rule in rules for word in self.judge_needles[rule]]
                ruling, judged = tuple(dict.fromkeys(every)), tuple(dict.fromkeys(judging))
                words = ruling, judged, (*ruling, _SUPPRESSION_MARKER) if judged else ruling
            self._words[rules] = words
        self._last_words = rules, words
        needles, judge, asked = words
        if needles is None:
            return True
        state = self.context.state
        if path not in state.current and state.files.recorded_answer(path, asked) is False:
            return False  # an unchanged file with none of the words (nor a suppression comment judging them)
        if state.mentions(path, needles):
            return True
        return _suppression_may_judge(state, path, judge)

    def add(self, path: str, rules: tuple[type[PoolshiftRule], ...]) -> None:
        """Decide ``path`` with ``rules``: most files have no rule's word and are done here (unread, when
        recorded facts of the unchanged file tell, see FileStore)."""
        matching: tuple[type[PoolshiftRule], ...] = ()
        if self._may_any_match(path, rules):  # most files: no rule's word is in them
            matching = tuple(rule for rule in rules if self._may_match(rule, path))
        data = self.context.state.read(path) if matching else None
        if data is None:
            self.context.progress.advance()
            return
        # The cache key names every rule that may have a say here, before the first pass narrows them.
        rule_ids = [rule.RULE_ID for rule in matching]
        matching, extra, relevant = self._narrow(path, data, matching)
        if not matching and not extra:
            self.context.progress.advance()
            return
        limit = self.context.limits.max_bytes
        if limit and len(data) > limit:  # refused before anything parses it (the first pass did not either)
            detail = f"{len(data)} bytes, over the limit of {limit}"
            self._decide(FileResult(path, data, None, [], "file-too-large", detail))
            return
        module_name, package_name = self.context.project.module_of(path)
        key = None
        if self.options_key:
            key = digest(
                "outcome", self.options_key, path, module_name, package_name, rule_ids, content_key(data),
                sorted(relevant.items()), sorted(self.options.patched_imports.get(module_name, ())),
            )  # fmt: skip
            cached = _cached_result(self.context, key, path, data)
            if cached is not None:
                self.context.result.files_cached += 1
                self._decide(cached)
                return
            matching = self._judge_detached(path, data, matching, extra)
        if not matching:  # only first-pass sites: nothing for LibCST to do
            outcome = FileResult(path, data, None, [])
            _merge_sites(outcome, extra)
            if key is not None:
                _store_result(self.context, key, outcome)
            self._decide(outcome)
            return
        on_disk = self.context.state.on_disk[path]
        self.jobs.append(
            _Job(
                path, data, matching, self.options, self.dry_run, module_name, package_name, self.chain,
                on_disk if data != on_disk else None, self.context.limits,
            )
        )  # fmt: skip
        self.keys.append(key)
        self.extras.append(extra)

    def _narrow(
        self, path: str, data: bytes, rules: tuple[type[PoolshiftRule], ...]
    ) -> tuple[tuple[type[PoolshiftRule], ...], list[Site], dict[str, str]]:
        """The rules the first pass cannot rule out here, its own sites, and the aliases they depend on.

        A rule with declared targets needs a resolved candidate, a rule with ``first_pass_wants`` its
        yes (a rule with both: either). A suppression comment is judged by the rules themselves (an
        unused one is reported), so in a file that has one, a rule whose own words are there runs anyway.
        """
        extra: list[Site] = []
        relevant: dict[str, str] = {}
        judges = self.context.state.contains(path, data, (_SUPPRESSION_MARKER,))
        needed = set(rules)
        if any(_targets_of(rule) for rule in rules):
            facts, relevant = self.context.facts(path, data)
            if facts.error is None:
                extra = _first_pass_sites(rules, path, facts)
                resolved = {c.target for c in facts.candidates if c.kind == "resolved"}
                needed = {rule for rule in rules if not _targets_of(rule) or _targets_of(rule) & resolved}
        asking = [
            rule for rule in rules if _asks_first_pass(rule) and not (_targets_of(rule) and rule in needed)
        ]
        if asking and not judges:
            if not relevant and self.context.aliases:
                relevant = self.context.facts(path, data)[1]
            needed -= set(asking)
            needed |= {
                rule
                for rule in asking
                if rule.applies_to_project(self.options) and self.context.wants(path, data, rule, relevant)
            }
        if judges:
            needed |= {
                rule
                for rule in rules
                if self.context.state.contains(path, data, self.needles[rule] + self.judge_needles[rule])
            }
        return tuple(rule for rule in rules if rule in needed), extra, relevant

    def _judge_detached(
        self, path: str, data: bytes, rules: tuple[type[PoolshiftRule], ...], sites: list[Site]
    ) -> tuple[type[PoolshiftRule], ...]:
        """Judge the redirect rules that can do without LibCST here (read-only runs); returns the rest."""
        redirect = [rule for rule in rules if issubclass(rule, RedirectCallRule)]
        if not redirect:
            return rules
        text, tree = self.context.parse(data) or ("", "")
        if isinstance(tree, str):
            return rules  # the transform reports it
        package = self.context.project.module_of(path)[1]
        remaining = list(rules)
        for rule in redirect:
            try:
                found = detached_sites(
                    rule, self.options, path, text, package, tree=tree, limits=self.context.limits
                )
            except RecursionError:  # a deeply nested file: the transform (deep stack, depth guard) decides
                found = None
            if found is not None:
                sites.extend(found)
                remaining.remove(rule)
        return tuple(remaining)

    def _decide(self, outcome: FileResult) -> None:
        self.decided[len(self.jobs) + len(self.decided)] = outcome
        self.context.progress.advance(1, len(outcome.sites))

    def results(self) -> list[FileResult]:
        """Every outcome in file order, the jobs transformed (in worker processes when worthwhile)."""
        transformed = _execute(self.jobs, self.context.workers, self.context.progress)
        for file_result, key, extra in zip(transformed, self.keys, self.extras, strict=True):
            _merge_sites(file_result, extra)
            if key is not None:
                _store_result(self.context, key, file_result)
        pending = iter(transformed)
        total = len(self.jobs) + len(self.decided)
        return [self.decided[index] if index in self.decided else next(pending) for index in range(total)]


def _own_phase(project: Project, path: str) -> str:
    """The phase a file visited only by TREE_WIDE rules belongs to, for its sites' label."""
    own = project.phase_of(path)
    return own.name if own is not None else UNASSIGNED


def _rules_per_path(
    project: Project, paths: Sequence[str], rules: Sequence[type[PoolshiftRule]], state: _State
) -> list[tuple[str, tuple[type[PoolshiftRule], ...]]]:
    """The phase's files with every rule, then every other non-excluded file with the TREE_WIDE rules.

    A TREE_WIDE rule runs on each file once per run (in the first phase that runs), so chained phases
    see its output and an inventory lists each of its sites once.
    """
    every = tuple(rules)  # one tuple for every file: the rule combinations' words are looked up by it
    tree_wide = tuple(rule for rule in every if rule.TREE_WIDE)
    other = tuple(rule for rule in every if not rule.TREE_WIDE)
    phase_paths = set(paths)
    planned: list[tuple[str, tuple[type[PoolshiftRule], ...]]] = []
    extra = [path for path in project.tree_files() if path not in phase_paths] if tree_wide else []
    done = state.tree_wide_done
    for path in [*paths, *extra]:
        candidates = every if path in phase_paths else tree_wide
        if path in done:
            candidates = other if candidates is every else ()
        elif tree_wide:
            done.add(path)
        if candidates:
            planned.append((path, candidates))
    return planned


def _run_phase(context: _Context, phase: Phase, paths: Sequence[str], *, dry_run: bool, chain: bool) -> None:
    project, state = context.project, context.state
    rules = [rule for rule in project.rules if phase.is_cleanup == rule.RUNS_LAST]
    if not rules:
        context.progress.advance(len(paths))
        return
    options = replace(
        project.rule_options(),
        module_aliases=context.aliases,
        psycopg2_imported=context.psycopg2_imported,
        patched_imports=context.patched_imports,
    )
    if phase.is_cleanup:
        options = replace(options, remaining_legacy_references=_references(project, state, context.cache))
    files = _PhaseFiles(context, rules, options, dry_run, chain)
    for path, path_rules in _rules_per_path(project, paths, rules, state):
        context.result.files_read += 1
        files.add(path, path_rules)
    context.result.files_parsed += len(files.jobs)
    _record(context, phase, set(paths), files.results(), dry_run=dry_run, chain=chain)


def _record(
    context: _Context,
    phase: Phase,
    phase_paths: set[str],
    results: list[FileResult],
    *,
    dry_run: bool,
    chain: bool,
) -> None:
    """Label, write (unless a dry run) and keep each file's outcome, in path order."""
    for file_result in results:
        path = file_result.path
        label = phase.name if path in phase_paths else _own_phase(context.project, path)
        file_result.sites = [replace(site, phase=label) for site in file_result.sites]
        outcome = FileOutcome(file_result, label)
        context.result.outcomes.append(outcome)
        if file_result.output is None:
            continue
        if not dry_run:
            try:
                atomic_write(
                    context.project.root / file_result.path, file_result.output, file_result.original
                )
            except OSError as exc:
                file_result.error, file_result.error_detail = "unwritable", str(exc)
                file_result.output, file_result.sites = None, []
                continue
            outcome.written = True
        if chain:
            context.state.current[file_result.path] = file_result.output


def run(
    project: Project,
    phases: Sequence[Phase],
    *,
    dry_run: bool,
    chain: bool = True,
    workers: int | None = None,
    progress: TextIO | None = None,
    include_unassigned: bool = False,
    cache: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> RunResult:
    """Run ``phases`` in order.

    With ``chain`` (migrate) each phase sees the previous phases' output, written or, in a dry run such as
    ``--diff``, simulated; so ``migrate --all --diff`` shows exactly what ``migrate --all`` would write,
    cleanup included. Without it (scan, check, status) every phase is judged on the tree as it is.
    ``include_unassigned`` also looks at files in no phase, reported under ``unassigned``, so an
    inventory never hides candidates. ``cache`` reads and writes ``.poolshift_cache/`` in the project
    root; ``progress`` is the stream for the progress line (shown only when it is a terminal).
    """
    if not dry_run or chain:
        project.files.facts = None  # a run that writes (or chains phases) reads every file it looks at
    state = _State(project.root, project.files)
    result = RunResult(project)
    with_unassigned = include_unassigned and any(not phase.is_cleanup for phase in phases)
    total = sum(len(project.files_in(phase)) for phase in phases)
    total += len(project.unassigned_files()) if with_unassigned else 0
    context = _Context(
        project=project,
        state=state,
        result=result,
        cache=ResultCache(project.root, enabled=cache),
        limits=limits,
        progress=_Progress(total, progress),
        workers=workers or os.cpu_count() or 1,
    )
    _project_facts(context)
    for phase in phases:
        _run_phase(context, phase, project.files_in(phase), dry_run=dry_run, chain=chain)
    if with_unassigned:
        unassigned = Phase(number=0, name=UNASSIGNED, paths=())
        _run_phase(context, unassigned, project.unassigned_files(), dry_run=True, chain=False)
    context.progress.finish()
    context.cache.save()
    project.files.save_facts()
    for path, data in state.current.items():
        if data != state.on_disk[path]:
            result.originals[path] = state.on_disk[path]
            result.finals[path] = data
    return result


def phases_up_to(plan: Plan, phase: Phase | None) -> list[Phase]:
    """Phase 1..N (``check --phase N`` keeps earlier phases clean too); every phase when None."""
    if phase is None:
        return list(plan.phases)
    return [candidate for candidate in plan.phases if candidate.number <= phase.number]


def phases_for_migrate(plan: Plan, phase: Phase | None) -> list[Phase]:
    """``--all`` (None): every phase in order, cleanup last; ``--phase N``: that phase only."""
    return list(plan.phases) if phase is None else [phase]
