"""The runner: text prefilter, parallel transforms, phases and atomic writes.

Cost model (the reason for the shape of this module): most files of a large tree contain no candidate at
all, so the parent process reads each file's bytes once and checks the rules' PREFILTER strings on the raw
bytes; only files that may contain a candidate are decoded, parsed and transformed, in a process pool.
Results come back in submission order, so reports and diffs are deterministic whatever ``-j`` is.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from codemods.legacy_helpers.discovery import prefilter_names
from codemods.legacy_helpers.references import find_legacy_references
from codemods.plan import Phase, Plan
from codemods.project import Project, decoded_sources
from codemods.rules.base import PoolshiftRule, RuleOptions, Site
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
    files_parsed: int = 0
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


def _transform_job(job: _Job) -> FileResult:
    """Transform one file and, when the output will be written or diffed, insist that a rerun is a no-op.

    A rule that keeps finding work in its own output would keep changing the user's code on every run;
    that is a rule bug, and the file is left alone rather than rewritten twice differently. (Inventories
    skip the second run: they write nothing, and it doubles the cost of every file with a candidate.)
    """

    def transform(data: bytes, dry_run: bool) -> FileResult:
        return transform_bytes(
            data, job.rules, path=job.path, options=job.options, dry_run=dry_run,
            module_name=job.module_name, package_name=job.package_name,
        )  # fmt: skip

    result = transform(job.data, job.dry_run)
    if result.output is not None and job.verify_idempotent:
        again = transform(result.output, True)
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


def _needles(rule: type[PoolshiftRule], legacy_names: Sequence[str]) -> tuple[bytes, ...]:
    """The strings one of which a file must contain for ``rule`` to have a candidate there."""
    needles = [*rule.PREFILTER, *(legacy_names if rule.LEGACY_HELPER_PREFILTER else ())]
    return tuple(dict.fromkeys(needle.encode("utf-8") for needle in needles))


class _Progress:
    """A one-line counter on stderr, only for a human watching (stderr is a TTY) and only on long runs."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total = total
        self.stream = stream if stream is not None and stream.isatty() else None
        self.started = time.monotonic()
        self.shown = False

    def update(self, done: int) -> None:
        if self.stream is None or time.monotonic() - self.started < 1.0:
            return
        self.stream.write(f"\rpoolshift: {done}/{self.total} files")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.stream is not None and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _execute(jobs: list[_Job], workers: int, progress_stream: TextIO | None) -> list[FileResult]:
    """Transform ``jobs``; results in job order whatever the completion order."""
    progress = _Progress(len(jobs), progress_stream)
    results: list[FileResult | None] = [None] * len(jobs)
    if workers <= 1 or len(jobs) < 2 or sum(len(job.data) for job in jobs) < MIN_BYTES_FOR_POOL:
        for index, job in enumerate(jobs):
            results[index] = _transform_job(job)
            progress.update(index + 1)
    else:
        # One job per task, largest file first. A file's cost grows with its size and sizes vary a
        # thousandfold across a real tree, so fixed chunks in path order leave one worker grinding through
        # a chunk of big files while the others idle; largest-first keeps that tail to one file. The
        # per-task overhead (pickling one file's bytes) is tiny next to parsing and analysing the file.
        order = sorted(range(len(jobs)), key=lambda index: -len(jobs[index].data))
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = {pool.submit(_transform_job, jobs[index]): index for index in order}
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                progress.update(done)
    progress.finish()
    return [result for result in results if result is not None]


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
    snapshot: Mapping[str, tuple[int, int, bytes]] = field(default_factory=dict)
    on_disk: dict[str, bytes] = field(default_factory=dict)
    current: dict[str, bytes] = field(default_factory=dict)
    #: Files the TREE_WIDE rules already ran on in this run (they run on each file once per run).
    tree_wide_done: set[str] = field(default_factory=set)

    def read(self, path: str) -> bytes | None:
        if path not in self.current:
            try:
                data = self._unchanged_snapshot(path) or (self.root / path).read_bytes()
            except OSError:
                return None
            self.on_disk[path] = data
            self.current[path] = data
        return self.current[path]

    def _unchanged_snapshot(self, path: str) -> bytes | None:
        """The bytes read while loading the project, if the file's stat says it has not changed since."""
        cached = self.snapshot.get(path)
        if cached is None:
            return None
        info = os.stat(self.root / path)
        return cached[2] if (info.st_mtime_ns, info.st_size) == cached[:2] else None


def _references(project: Project, state: _State) -> tuple[str, ...]:
    if not project.legacy_helpers:
        return ()
    needles = [name.encode() for name in prefilter_names(project.legacy_helpers)]
    files: dict[str, bytes] = {}
    for path in project.all_files:
        data = state.read(path)
        if data is not None and any(needle in data for needle in needles):
            files[path] = data
    sources = decoded_sources(files)
    names = {path: project.module_of(path)[0] for path in sources}
    return find_legacy_references(sources, names, project.legacy_helpers)


def _own_phase(project: Project, path: str) -> str:
    """The phase a file visited only by TREE_WIDE rules belongs to, for its sites' label."""
    own = project.plan.phase_of(path)
    return own.name if own is not None else UNASSIGNED


def _rules_per_path(
    project: Project, paths: Sequence[str], rules: Sequence[type[PoolshiftRule]], state: _State
) -> list[tuple[str, tuple[type[PoolshiftRule], ...]]]:
    """The phase's files with every rule, then every other non-excluded file with the TREE_WIDE rules.

    A TREE_WIDE rule runs on each file once per run (in the first phase that runs), so chained phases
    see its output and an inventory lists each of its sites once.
    """
    tree_wide = tuple(rule for rule in rules if rule.TREE_WIDE)
    phase_paths = set(paths)
    planned: list[tuple[str, tuple[type[PoolshiftRule], ...]]] = []
    extra = [path for path in project.tree_files() if path not in phase_paths] if tree_wide else []
    for path in [*paths, *extra]:
        candidates = rules if path in phase_paths else tree_wide
        if path in state.tree_wide_done:
            candidates = tuple(rule for rule in candidates if not rule.TREE_WIDE)
        elif tree_wide:
            state.tree_wide_done.add(path)
        if candidates:
            planned.append((path, tuple(candidates)))
    return planned


def _run_phase(
    project: Project,
    phase: Phase,
    paths: Sequence[str],
    state: _State,
    result: RunResult,
    *,
    dry_run: bool,
    chain: bool,
    workers: int,
    progress: TextIO | None,
) -> None:
    rules = [rule for rule in project.rules if phase.is_cleanup == rule.RUNS_LAST]
    if not rules:
        return
    options = project.rule_options()
    if phase.is_cleanup:
        options = replace(options, remaining_legacy_references=_references(project, state))
    legacy_names = prefilter_names(project.legacy_helpers)
    needles = {rule: _needles(rule, legacy_names) for rule in rules}
    jobs: list[_Job] = []
    for path, path_rules in _rules_per_path(project, paths, rules, state):
        data = state.read(path)
        result.files_read += 1
        if data is None:
            continue
        # Byte-level prefilter: a rule with no needle in the file cannot have a candidate there.
        matching = tuple(
            rule for rule in path_rules if not needles[rule] or any(n in data for n in needles[rule])
        )
        if matching:
            module_name, package_name = project.module_of(path)
            on_disk = state.on_disk[path] if data != state.on_disk[path] else None
            jobs.append(
                _Job(path, data, matching, options, dry_run, module_name, package_name, chain, on_disk)
            )
    result.files_parsed += len(jobs)
    phase_paths = set(paths)
    for file_result in _execute(jobs, workers, progress):
        label = phase.name if file_result.path in phase_paths else _own_phase(project, file_result.path)
        file_result.sites = [replace(site, phase=label) for site in file_result.sites]
        outcome = FileOutcome(file_result, label)
        result.outcomes.append(outcome)
        if file_result.output is None:
            continue
        if not dry_run:
            try:
                atomic_write(project.root / file_result.path, file_result.output, file_result.original)
            except OSError as exc:
                file_result.error, file_result.error_detail = "unwritable", str(exc)
                file_result.output, file_result.sites = None, []
                continue
            outcome.written = True
        if chain:
            state.current[file_result.path] = file_result.output


def run(
    project: Project,
    phases: Sequence[Phase],
    *,
    dry_run: bool,
    chain: bool = True,
    workers: int | None = None,
    progress: TextIO | None = None,
    include_unassigned: bool = False,
) -> RunResult:
    """Run ``phases`` in order.

    With ``chain`` (migrate) each phase sees the previous phases' output, written or, in a dry run such as
    ``--diff``, simulated; so ``migrate --all --diff`` shows exactly what ``migrate --all`` would write,
    cleanup included. Without it (scan, check, status) every phase is judged on the tree as it is.
    ``include_unassigned`` also looks at files in no phase, reported under ``unassigned``, so an
    inventory never hides candidates.
    """
    workers = workers or os.cpu_count() or 1
    state = _State(project.root, project.snapshot)
    result = RunResult(project)
    for phase in phases:
        _run_phase(
            project, phase, project.files_in(phase), state, result,
            dry_run=dry_run, chain=chain, workers=workers, progress=progress,
        )  # fmt: skip
    if include_unassigned and any(not phase.is_cleanup for phase in phases):
        unassigned = Phase(number=0, name=UNASSIGNED, paths=())
        _run_phase(
            project, unassigned, project.unassigned_files(), state, result,
            dry_run=True, chain=False, workers=workers, progress=progress,
        )  # fmt: skip
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
