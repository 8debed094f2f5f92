"""``poolshift scan | migrate | check | status``: the command line over the runner.

Output discipline: reports go to stdout (``--format``), except with ``migrate --diff`` where stdout is the
patch alone and the report goes to stderr; warnings and errors go to stderr; a progress counter appears on
stderr only when it is a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from codemods import __version__
from codemods.cache import ResultCache
from codemods.files import CONFIG_NAMES, FileDiscoveryError, git_toplevel
from codemods.groups import group_paths
from codemods.guide import explain, rules_table
from codemods.helper_summary import helper_lines
from codemods.limits import DEFAULT_LIMITS
from codemods.plan import Phase, PlanError
from codemods.project import Project, load_project
from codemods.report import FORMATS, FileError, Report, combine, render, unified_diff
from codemods.rules import all_rules
from codemods.runner import RunResult, phases_for_migrate, phases_up_to, run
from codemods.status import labelled, phase_statuses, render_status
from codemods.suppressions import UNUSED_CODE
from codemods.transform import CRASH_CODES

__all__ = ["EXIT_CLEAN", "EXIT_CRASH", "EXIT_ERROR", "EXIT_REMAINING", "main"]

EXIT_CLEAN = 0
EXIT_REMAINING = 1
EXIT_ERROR = 2
#: poolshift itself failed on a file (see transform.CRASH_CODES); the report still printed.
EXIT_CRASH = 3
#: stdout was closed before the output was written (``| head``): what a shell reports for SIGPIPE.
EXIT_BROKEN_PIPE = 141

EXIT_CODES_HELP = """\
exit codes:
  scan     0 report printed; 2 bad arguments or configuration
  migrate  0 done; 1 done, but some files were left untouched (listed with a reason);
           2 refused or bad arguments/configuration (nothing written)
  check    0 clean: no migratable site in the checked phases and every file could be analysed
           (suppressed sites do not count); 1 migratable sites remain, or an unused suppression;
           2 error (a file could not be analysed, bad configuration)
  status   0 status printed; 2 bad arguments or configuration
  rules    0 table printed
  explain  0 text printed; 2 no rule or reason code of that name
  any      3 poolshift crashed on a file (a bug: please report it); that file was left untouched,
           every other file was handled and the report printed
           141 the output's reader went away (`| head`); files migrate wrote stay written
"""

CONFIG_HELP = """\
configuration:
  The closest .poolshift.toml, poolshift.toml or pyproject.toml with [tool.poolshift] (in that order
  within a directory), from each PATH up to the repository top, as ruff finds its own, and the files
  inside a directory PATH for their own subtrees; PATHs under different files run once per file (one
  report, the worst exit code); --config FILE overrides it and
  -v names the file used. Keys: legacy_helpers, exclude, select, ignore, and
  [[phases]] (name, paths). Every key with its default and an example:
  README.md, section "Configuration". Suppress one call with `# poolshift: ignore[PS201]`;
  `poolshift rules` lists the rules, `poolshift explain CODE` explains a rule or a reason code.
"""


def _rules_help() -> str:
    lines = [f"  {rule_id}  {rule.NAME}: {rule.DESCRIPTION}" for rule_id, rule in all_rules().items()]
    return "rules:\n" + "\n".join(lines) + "\n"


PHASES_HELP = """\
phases:
  --phase takes a number or a name from [[tool.poolshift.phases]] (in order; a file belongs to the first
  phase whose globs match); `cleanup` is the implicit last phase, where only the cleanup rule runs.
  Without phases there is one, `all`. `poolshift status PATH` lists a project's phases.
"""

SHADOW_WARNING = (
    "this project has its own top-level `db_utils` ({paths}). Migrated code does `import db_utils`, "
    "which would import the project's module instead of poolshift's shim. Rename it before migrating "
    "(or pass --allow-shadowed-db-utils to migrate if you know why it is safe)."
)


def _split(values: list[str] | None) -> tuple[str, ...]:
    """``--select PS201,PS301 --select PS101`` -> all three."""
    return tuple(item.strip() for value in values or () for item in value.split(",") if item.strip())


def _add_common(parser: argparse.ArgumentParser, *, formats: bool = True, rules: bool = True) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or directories")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-q", "--quiet", action="store_true", help="text report: the summary only; no progress line"
    )
    loudness.add_argument(
        "-v", "--verbose", action="store_true", help="text report: every place of a merged site too"
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="project root (default: the configuration file's directory, else the nearest pyproject.toml "
        "or .git)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="use this configuration file (a poolshift.toml with [tool.poolshift]'s keys at top level, or "
        "a pyproject.toml) instead of the closest one (globs relative to its directory)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files matching GLOB (relative to the project root; repeatable; adds to the config's)",
    )
    parser.add_argument("-j", "--jobs", type=int, default=0, help="worker processes (default: CPU count)")
    parser.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the .poolshift_cache/ directory"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_LIMITS.time_s,
        metavar="SECONDS",
        help=f"time limit per file, then reported as `timeout` (0: none; default {DEFAULT_LIMITS.time_s:g})",
    )
    if formats:
        parser.add_argument("--format", choices=FORMATS, default="text", help="report format")
    if rules:
        parser.add_argument(
            "--select", action="append", metavar="RULE", help="only these rules (or prefixes)"
        )
        parser.add_argument("--ignore", action="append", metavar="RULE", help="skip these rules")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poolshift",
        description="Move legacy Python code from connect-per-call onto pooled connections, in phases.",
        epilog=EXIT_CODES_HELP + "\n" + CONFIG_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"poolshift {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = commands.add_parser(
        "scan",
        help="read-only inventory of every candidate site",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(scan)

    migrate = commands.add_parser(
        "migrate",
        help="rewrite files in place (or print a diff)",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(migrate)
    which = migrate.add_mutually_exclusive_group()
    which.add_argument("--phase", metavar="N", help="only this phase (number or name; 'cleanup' last)")
    which.add_argument("--all", action="store_true", help="every phase in order, then the cleanup")
    migrate.add_argument("--diff", action="store_true", help="print a git-applicable diff, write nothing")
    migrate.add_argument(
        "--allow-shadowed-db-utils",
        action="store_true",
        help="migrate even if the project has its own db_utils",
    )

    check = commands.add_parser(
        "check",
        help="CI gate: fail while migratable sites remain",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(check)
    check.add_argument("--phase", metavar="N", help="check phases 1..N only (number or name)")

    status = commands.add_parser(
        "status",
        help="progress per phase and in total (migrated, remaining, reported, suppressed, errors)",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(status, rules=False)

    rules = commands.add_parser("rules", help="list the rules: id, name, safety, phase, one line")
    rules.add_argument("--format", choices=FORMATS, default="text", help="table format")
    explain_ = commands.add_parser(
        "explain", help="print the guide's text for a rule id or a reason code (e.g. PS201, memory-database)"
    )
    explain_.add_argument("code", metavar="CODE")
    return parser


def _epilog() -> str:
    return "\n".join([_rules_help(), PHASES_HELP, CONFIG_HELP, EXIT_CODES_HELP])


def _projects(args: argparse.Namespace) -> list[tuple[str, Project]]:
    """The projects the PATHs belong to, one per configuration (ruff's grouping), each with the prefix
    its report paths get in the combined report: its root relative to the current directory when there
    are several, else nothing (paths relative to the one project root, as always)."""
    if args.config is not None:
        return [("", _load(args, args.config, args.paths, ()))]
    groups = group_paths(args.paths, root=args.root)
    loaded = [_load(args, group.config, group.paths, group.nested) for group in groups]
    if len(loaded) == 1:
        return [("", loaded[0])]
    return [(_prefix(project.root), project) for project in loaded]


def _prefix(root: Path) -> str:
    relative = Path(os.path.relpath(root, Path.cwd())).as_posix()
    return "" if relative == "." else relative + "/"


#: The commands that never write: their runs may skip reading files unchanged since an earlier one.
_READ_ONLY_COMMANDS = frozenset({"scan", "check", "status"})


def _load(
    args: argparse.Namespace, config: Path | None, paths: Sequence[Path], nested: Sequence[str]
) -> Project:
    project = load_project(
        paths,
        select=_split(getattr(args, "select", None)),
        ignore=_split(getattr(args, "ignore", None)),
        root=args.root,
        config=config,
        exclude=[*args.exclude, *nested],
        cache=not args.no_cache,
        read_only=args.command in _READ_ONLY_COMMANDS,
    )
    if args.verbose:
        if config is None:
            names = ", ".join(CONFIG_NAMES[:-1]) + f" or {CONFIG_NAMES[-1]} with [tool.poolshift]"
            used = f"none found (no {names} from {paths[0]} up to {project.root}): defaults"
        else:
            used = f"{config.resolve()} ({'--config' if args.config is not None else 'the closest'})"
        sys.stderr.write(f"poolshift: configuration: {used}\npoolshift: project root: {project.root}\n")
    return project


def _report(project: Project, result: RunResult, title: str) -> Report:
    warnings = list(project.warnings)
    if project.shadowing_db_utils:
        warnings.insert(0, SHADOW_WARNING.format(paths=", ".join(project.shadowing_db_utils)))
    errors = [
        FileError(o.result.path, o.result.error or "", o.result.error_detail, o.phase) for o in result.errors
    ]
    return Report(sites=result.sites, errors=errors, warnings=warnings, title=title)


def _shadow_banner(project: Project) -> None:
    if project.shadowing_db_utils:
        bar = "!" * 78
        text = SHADOW_WARNING.format(paths=", ".join(project.shadowing_db_utils))
        sys.stderr.write(f"{bar}\npoolshift: WARNING: {text}\n{bar}\n")


def _run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "workers": args.jobs or os.cpu_count() or 1,
        "progress": None if args.quiet else sys.stderr,
        "cache": not args.no_cache,
        "limits": replace(DEFAULT_LIMITS, time_s=args.timeout),
    }


def _crashed(result: RunResult, code: int) -> int:
    """``code``, unless poolshift crashed on a file: that is told apart from anything about the code."""
    return EXIT_CRASH if any(o.result.error in CRASH_CODES for o in result.errors) else code


_SITE_LINE = re.compile(r"^\S+:\d+:\d+: PS\d+ \[")
_COLOURS = {"migratable": "33", "migrated": "32", "reported": "35", "suppressed": "2", "error": "31"}


def _use_colour(stream: Any) -> bool:
    """Colour only for a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def _colour(line: str) -> str:
    match = re.search(r"\[(migratable|migrated|reported|suppressed|error)\b", line) or re.search(
        r": (error) \[", line
    )
    if match is None:
        return line
    code = _COLOURS[match.group(1)]
    return line[: match.start(1)] + f"\x1b[{code}m{match.group(1)}\x1b[0m" + line[match.end(1) :]


def _emit(report: Report, args: argparse.Namespace, stream: Any) -> None:
    """The report in ``--format``; the text one shortened by ``--quiet``, coloured on a terminal."""
    if args.format != "text":
        stream.write(render(report, args.format))
        return
    lines = render(report, "text", verbose=args.verbose).splitlines()
    if args.quiet:
        lines = [line for line in lines if not _SITE_LINE.match(line) and not line.startswith("note")]
    if _use_colour(stream):
        lines = [_colour(line) for line in lines]
    stream.write("\n".join(lines) + "\n")


def cmd_scan(args: argparse.Namespace) -> int:
    parts: list[tuple[str, Report]] = []
    code = EXIT_CLEAN
    for prefix, project in _projects(args):
        _shadow_banner(project)
        result = run(
            project, project.plan.phases, dry_run=True, chain=False, include_unassigned=True,
            **_run_kwargs(args),
        )  # fmt: skip
        report = _report(project, result, "poolshift scan")
        cache = ResultCache(project.root, enabled=not args.no_cache)
        report.notes = helper_lines(project, result, cache)
        cache.save()
        parts.append((prefix, report))
        code = max(code, _crashed(result, EXIT_CLEAN))
    _emit(combine(parts, "poolshift scan"), args, sys.stdout)
    return code


def _diff_prefix(project: Project) -> str:
    """Diff paths are relative to the git top level when there is one, so ``git apply`` works from there."""
    top = git_toplevel(project.root)
    if top is None or top == project.root:
        return ""
    return project.root.relative_to(top).as_posix() + "/"


def _migrate_phases(project: Project, args: argparse.Namespace) -> list[Phase] | None:
    """The phases ``migrate`` runs in ``project``; None (after saying why on stderr) when it must not."""
    if project.shadowing_db_utils and not args.allow_shadowed_db_utils:
        _shadow_banner(project)
        return None
    phase: Phase | None = None
    if args.phase is not None:
        phase = project.plan.resolve_phase(args.phase)
    elif not args.all and len(project.plan.work_phases) > 1:
        names = ", ".join(p.label() for p in project.plan.phases)
        sys.stderr.write(f"poolshift: error: {project.root}: choose --phase N or --all (phases: {names})\n")
        return None
    if phase is None and not args.all:
        # One work phase and no --phase/--all: that phase only. Removing code is never implicit.
        return list(project.plan.work_phases)
    return phases_for_migrate(project.plan, phase)


def cmd_migrate(args: argparse.Namespace) -> int:
    projects = _projects(args)
    # Every project's phases are decided before any file is written: a refusal anywhere writes nothing.
    planned = [(prefix, project, _migrate_phases(project, args)) for prefix, project in projects]
    if any(phases is None for _, _, phases in planned):
        sys.stderr.write("poolshift: error: refusing to migrate (see above); nothing was written\n")
        return EXIT_ERROR
    if args.phase is None and not args.all:
        sys.stderr.write("poolshift: the cleanup phase was not run (run it with --phase cleanup or --all)\n")
    parts: list[tuple[str, Report]] = []
    diffs: dict[str, bytes] = {}
    written = 0
    code = EXIT_CLEAN
    for prefix, project, phases in planned:
        result = run(project, phases or [], dry_run=args.diff, chain=True, **_run_kwargs(args))
        parts.append((prefix, _report(project, result, "poolshift migrate")))
        diff_prefix = _diff_prefix(project)
        diffs.update(
            (prefix + path, unified_diff(diff_prefix + path, result.originals[path], result.finals[path]))
            for path in sorted(result.finals)
        )
        written += sum(outcome.written for outcome in result.outcomes)
        code = max(code, _crashed(result, EXIT_REMAINING if result.errors else EXIT_CLEAN))
    report = combine(parts, "poolshift migrate")
    if args.diff:
        _emit_diff(report, diffs, args)
    else:
        _emit(report, args, sys.stdout)
        sys.stderr.write(f"poolshift: {written} file(s) rewritten\n")
    return code


def _emit_diff(report: Report, diffs: dict[str, bytes], args: argparse.Namespace) -> None:
    """``--diff``: text puts the patch alone on stdout (the report on stderr); JSON and markdown carry
    the report and the diff of each file together on stdout."""
    text = {path: diff.decode("utf-8", "surrogateescape") for path, diff in diffs.items() if diff}
    if args.format == "json":
        data = report.to_dict()
        data["diffs"] = text
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif args.format == "markdown":  # for people: undecodable bytes shown as U+FFFD
        readable = {path: diff.decode("utf-8", "replace") for path, diff in diffs.items() if diff}
        blocks = [f"### `{path}`\n\n```diff\n{diff}```\n" for path, diff in readable.items()]
        sys.stdout.write(render(report, "markdown") + "\n## Diff\n\n" + "\n".join(blocks))
    else:
        for diff in diffs.values():
            sys.stdout.buffer.write(diff)
        sys.stdout.flush()
        _emit(report, args, sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    parts: list[tuple[str, Report]] = []
    code = EXIT_CLEAN
    for prefix, project in _projects(args):
        _shadow_banner(project)
        phase = project.plan.resolve_phase(args.phase) if args.phase is not None else None
        phases = phases_up_to(project.plan, phase)
        result = run(
            project, phases, dry_run=True, chain=False, include_unassigned=phase is None, **_run_kwargs(args)
        )
        parts.append((prefix, _report(project, result, "poolshift check")))
        code = max(code, _check_code(result))
    _emit(combine(parts, "poolshift check"), args, sys.stdout)
    return code


def _check_code(result: RunResult) -> int:
    if result.errors:
        return _crashed(result, EXIT_ERROR)
    if any(site.status == "migratable" or site.reason == UNUSED_CODE for site in result.sites):
        return EXIT_REMAINING
    return EXIT_CLEAN


def cmd_status(args: argparse.Namespace) -> int:
    projects = _projects(args)
    rows = []
    code = EXIT_CLEAN
    for prefix, project in projects:
        _shadow_banner(project)
        result = run(
            project, project.plan.phases, dry_run=True, chain=False, include_unassigned=True,
            **_run_kwargs(args),
        )  # fmt: skip
        own = phase_statuses(project, result)
        rows.extend(labelled(own, prefix.rstrip("/") or ".") if len(projects) > 1 else own)
        code = max(code, _crashed(result, EXIT_CLEAN))
    sys.stdout.write(render_status(rows, args.format))
    return code


def cmd_rules(args: argparse.Namespace) -> int:
    sys.stdout.write(rules_table(args.format))
    return EXIT_CLEAN


def cmd_explain(args: argparse.Namespace) -> int:
    text = explain(args.code)
    if text is None:
        sys.stderr.write(
            f"poolshift: error: no rule or reason code {args.code!r}; `poolshift rules` lists the rules\n"
        )
        return EXIT_ERROR
    sys.stdout.write(text)
    return EXIT_CLEAN


COMMANDS = {
    "scan": cmd_scan,
    "migrate": cmd_migrate,
    "check": cmd_check,
    "status": cmd_status,
    "rules": cmd_rules,
    "explain": cmd_explain,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "jobs", 0) < 0:
        parser.error("--jobs must be >= 0")
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        # `poolshift migrate . --diff | head`: the reader has what it wanted. Stop quietly, as POSIX tools
        # do; stdout goes to /dev/null so the interpreter's last flush cannot raise the same error again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except (PlanError, FileDiscoveryError) as exc:  # the user's input, explained; anything else is a bug
        sys.stderr.write(f"poolshift: error: {exc}\n")
        return EXIT_ERROR
