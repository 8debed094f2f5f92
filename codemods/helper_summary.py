"""``scan``'s one line per legacy helper: where it is and what the migration will do with it.

A user who runs ``scan`` on a real project first wants to know whether poolshift understood the code:
which helpers it found (by behavior, whatever their names), that their own ``psycopg2.connect`` gets
pooled, how many places keep calling them, and how many of those PS101 can turn into the idiomatic form.
When nothing at all was found, the line says what was looked for and how to point poolshift at a helper,
instead of an empty report that reads like "nothing to do".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from codemods.cache import ResultCache
from codemods.legacy_helpers.discovery import FoundHelper, prefilter_names
from codemods.legacy_helpers.references import find_legacy_references
from codemods.project import Project, decoded_sources
from codemods.rules._legacy_helper_call import THROUGH_RECEIVER
from codemods.runner import RunResult

__all__ = ["NO_CANDIDATE", "helper_lines"]

NO_CANDIDATE = (
    "no candidate found. poolshift looked for calls of psycopg2.connect, sqlite3.connect and "
    "urllib.request.urlopen, and for functions returning psycopg2.connect (helpers, any name). If your "
    "code connects through a helper poolshift cannot see, name it in pyproject.toml: [tool.poolshift] "
    'legacy_helpers = ["package.module.function"]. A tree migrated already has none left: '
    "`poolshift status` counts the calls that go through db_utils"
)


def helper_lines(project: Project, result: RunResult, cache: ResultCache | None = None) -> list[str]:
    """One line per helper; or the no-candidate line when there is neither a helper nor a site.

    ``cache`` keeps each file's helper references across runs (they depend on its content alone)."""
    if not project.found_helpers:
        # No count of db_utils calls here: on a large tree with nothing to migrate it would be the
        # run's only per-file work (status does it, when asked).
        return [] if result.sites else [NO_CANDIDATE]
    targets = set(project.target_files)
    uses, used_in_targets = _uses_per_helper(project, cache, targets)
    idiomatic = Counter(
        site.message.partition(":")[0]
        for site in result.sites
        if site.rule == "PS101" and site.status in ("migratable", "migrated")
    )
    through_receiver = Counter(
        site.message.partition(THROUGH_RECEIVER)[0]
        for site in result.sites
        if site.rule == "PS101" and THROUGH_RECEIVER in site.message
    )
    return [
        _method_line(helper, through_receiver[helper.name])
        if _is_method(project, helper)
        else _line(helper, uses[helper.name], idiomatic[helper.name])
        for helper in project.found_helpers
        if not helper.path or helper.path in targets or helper.name in used_in_targets
    ]


def _line(helper: FoundHelper, uses: int, idiomatic: int) -> str:
    where = f"{helper.path}:{helper.line}" if helper.path else "definition not found"
    return (
        f"helper {helper.name} ({where}): {_what_it_returns(helper)}; {uses} place(s) keep calling it; "
        f"PS101 can rewrite {idiomatic} of them"
    )


def _is_method(project: Project, helper: FoundHelper) -> bool:
    """A helper defined in a class: its name goes on past its module's."""
    return bool(helper.path) and helper.name.rpartition(".")[0] != project.module_of(helper.path)[0]


def _method_line(helper: FoundHelper, through_receiver: int) -> str:
    """Calls of a method go through objects, whose class the code does not say: only ``self.m()`` in its
    own class is found, and never rewritten (a subclass may override it)."""
    return (
        f"helper {helper.name} ({helper.path}:{helper.line}), a method: {_what_it_returns(helper)}; "
        f"{through_receiver} call(s) through self/cls in its class (reported by PS101, not rewritten); calls "
        "through other objects are not followed"
    )


def _what_it_returns(helper: FoundHelper) -> str:
    if not helper.path:
        return "named in legacy_helpers, but poolshift did not find it returning a connection"
    origins = set(helper.returns_from)
    said: list[str] = []
    if "psycopg2.connect" in origins:
        said.append("its psycopg2.connect is pooled by PS100")
    if "db_utils.postgres.connect" in origins:
        said.append("its connect is already pooled (db_utils.postgres.connect)")
    others = sorted(origins - {"psycopg2.connect", "db_utils.postgres.connect"})
    if others:
        said.append("it returns the connection of " + ", ".join(others))
    return " and ".join(said)


def _uses_per_helper(
    project: Project, cache: ResultCache | None, targets: set[str]
) -> tuple[Counter[str], set[str]]:
    """References to each helper in the whole tree, outside its own definition (imports excluded), and
    the helpers referenced in ``targets`` (the PATHs scanned: ``scan b.py`` says nothing of a helper only
    ``a.py`` defines and uses)."""
    names = [helper.name for helper in project.found_helpers]
    needles = [name.encode() for name in prefilter_names(names)]
    files: dict[str, bytes] = {}
    for path in project.all_files:
        data = project.files.read(path) if project.files.contains(path, needles) else None
        if data is not None:
            files[path] = data
    sources = decoded_sources(files)
    modules = {path: project.module_of(path)[0] for path in sources}
    counts: Counter[str] = Counter()
    in_targets: set[str] = set()
    for reference in find_legacy_references(sources, modules, names, cache):
        for name in _referenced(reference, names):
            counts[name] += 1
            if reference.partition(":")[0] in targets:
                in_targets.add(name)
    return counts, in_targets


def _referenced(reference: str, names: Sequence[str]) -> list[str]:
    """The helper a ``find_legacy_references`` line refers to, when it is a use (not an import)."""
    what = reference.split(": ", 1)[-1]
    return [name for name in names if what.startswith(f"refers to {name} (")]
