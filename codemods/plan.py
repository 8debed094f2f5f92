"""The migration plan: ordered phases (path globs) from ``[tool.poolshift]`` in the target's pyproject.toml.

Phases let a team migrate a large codebase one slice at a time (API handlers first, batch jobs later) and
gate each slice in CI. A file belongs to the *first* phase whose globs match it, so phases never overlap;
the legacy-helper cleanup is an implicit last phase, because removing the helper is only safe once nothing
uses it any more.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "CLEANUP",
    "Phase",
    "Plan",
    "PlanError",
    "glob_matches",
    "load_plan",
]

CLEANUP = "cleanup"
DEFAULT_PHASE = "all"
_KNOWN_KEYS = {"legacy_helpers", "exclude", "select", "ignore", "phases"}
#: Keys that existed once, with what to do instead (an unknown-key error would not say why).
_REMOVED_KEYS = {
    "trust_legacy_helpers": (
        "trust_legacy_helpers was removed: it routed helper calls to the shim's own settings, which can "
        "be another database. PS100 now pools the helper's own psycopg2.connect, so nothing needs "
        "trusting; delete the key"
    ),
}
_PHASE_KEYS = {"name", "paths"}


class PlanError(ValueError):
    """A ``[tool.poolshift]`` table that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Phase:
    number: int
    name: str
    paths: tuple[str, ...]

    @property
    def is_cleanup(self) -> bool:
        return self.name == CLEANUP

    def label(self) -> str:
        return f"{self.number}:{self.name}"


@dataclass(frozen=True)
class Plan:
    """Phases in order (the cleanup phase last), plus project-wide settings."""

    phases: tuple[Phase, ...]
    legacy_helpers: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    config_path: Path | None = None
    root: Path = field(default_factory=Path.cwd)

    @property
    def cleanup(self) -> Phase:
        return self.phases[-1]

    @property
    def work_phases(self) -> tuple[Phase, ...]:
        """Every phase except the cleanup."""
        return self.phases[:-1]

    def phase_of(self, relpath: str) -> Phase | None:
        """The first non-cleanup phase whose globs match ``relpath``; None for a file in no phase."""
        for phase in self.work_phases:
            if any(glob_matches(pattern, relpath) for pattern in phase.paths):
                return phase
        return None

    def is_excluded(self, relpath: str) -> bool:
        return any(glob_matches(pattern, relpath) for pattern in self.exclude)

    def resolve_phase(self, spec: str) -> Phase:
        """``--phase`` accepts a number (1-based) or a name; the cleanup is ``cleanup`` or its number."""
        for phase in self.phases:
            if spec in (str(phase.number), phase.name):
                return phase
        choices = ", ".join(phase.label() for phase in self.phases)
        raise PlanError(f"unknown phase {spec!r}; the plan has: {choices}")


@lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a gitignore-style glob: ``**`` spans directories, ``*`` and ``?`` stay within one."""
    pattern = pattern.strip().lstrip("/")
    if pattern.endswith("/"):
        pattern += "**"
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_matches(pattern: str, relpath: str) -> bool:
    """Whether the relative posix path matches ``pattern``; a plain directory name covers its contents."""
    if _glob_regex(pattern).match(relpath):
        return True
    # "legacy_app/api" (no wildcard) means the directory and everything below it, as in most tools.
    return not any(ch in pattern for ch in "*?[") and relpath.startswith(pattern.strip("/") + "/")


def _string_list(table: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PlanError(f"{where}: {key} must be a list of strings, got {value!r}")
    return tuple(value)


def _phases(raw: object, where: str) -> list[Phase]:
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise PlanError(f"{where}: phases must be an array of tables ([[tool.poolshift.phases]])")
    phases: list[Phase] = []
    for number, table in enumerate(raw, start=1):
        unknown = set(table) - _PHASE_KEYS
        if unknown:
            raise PlanError(f"{where}: phase {number} has unknown keys {sorted(unknown)}")
        name = table.get("name", f"phase-{number}")
        if not isinstance(name, str) or not name or name.isdigit():
            raise PlanError(f"{where}: phase {number} needs a non-numeric name, got {name!r}")
        if name == CLEANUP or any(phase.name == name for phase in phases):
            raise PlanError(f"{where}: phase name {name!r} is reserved or used twice")
        paths = _string_list(table, "paths", f"{where}: phase {name!r}")
        if not paths:
            raise PlanError(f"{where}: phase {name!r} needs a non-empty paths list")
        phases.append(Phase(number=number, name=name, paths=paths))
    return phases


def plan_from_table(table: dict[str, Any], *, root: Path, config_path: Path | None = None) -> Plan:
    """Validate a ``[tool.poolshift]`` table (already parsed) into a Plan."""
    where = str(config_path or "[tool.poolshift]")
    for key in sorted(set(table) & set(_REMOVED_KEYS)):
        raise PlanError(f"{where}: {_REMOVED_KEYS[key]}")
    unknown = set(table) - _KNOWN_KEYS
    if unknown:
        known = sorted(_KNOWN_KEYS)
        raise PlanError(f"{where}: unknown [tool.poolshift] keys {sorted(unknown)}; known: {known}")
    if "phases" in table:
        phases = _phases(table["phases"], where)
    else:
        phases = [Phase(number=1, name=DEFAULT_PHASE, paths=("**",))]
    if not phases:
        raise PlanError(f"{where}: phases is empty")
    phases.append(Phase(number=len(phases) + 1, name=CLEANUP, paths=("**",)))
    return Plan(
        phases=tuple(phases),
        legacy_helpers=_string_list(table, "legacy_helpers", where),
        exclude=_string_list(table, "exclude", where) or (),
        select=_string_list(table, "select", where) or (),
        ignore=_string_list(table, "ignore", where) or (),
        config_path=config_path,
        root=root,
    )


def read_toml(path: Path, error: type[ValueError] = PlanError) -> dict[str, Any]:
    """``path`` parsed as TOML; a file that cannot be read or parsed raises ``error``, naming it."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read the configuration: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid TOML: {exc}") from exc


def load_plan(root: Path) -> Plan:
    """The plan in ``root/pyproject.toml``; one phase "all" (plus cleanup) when there is none."""
    config_path = root / "pyproject.toml"
    if not config_path.is_file():
        return plan_from_table({}, root=root)
    table = read_toml(config_path).get("tool", {}).get("poolshift")
    if table is None:
        return plan_from_table({}, root=root)
    if not isinstance(table, dict):
        raise PlanError(f"{config_path}: [tool.poolshift] must be a table")
    return plan_from_table(table, root=root, config_path=config_path)


def select_rule_ids(
    available: Iterable[str], select: Sequence[str] = (), ignore: Sequence[str] = ()
) -> list[str]:
    """Rule IDs after ``select``/``ignore`` (a prefix such as ``PS2`` selects a family); order kept."""
    ids = list(available)
    for spec in (*select, *ignore):
        if not any(rule_id.startswith(spec) for rule_id in ids):
            raise PlanError(f"unknown rule {spec!r}; available: {', '.join(ids)}")
    if select:
        ids = [rule_id for rule_id in ids if any(rule_id.startswith(spec) for spec in select)]
    return [rule_id for rule_id in ids if not any(rule_id.startswith(spec) for spec in ignore)]
