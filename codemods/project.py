"""Loading a project: its root and plan, its Python files, the selected rules and its legacy helpers.

Everything here is known before any file is transformed, and is the same for every phase of a run: it is
computed once (:func:`load_project`) and handed down to the runner as a :class:`Project`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from codemods.cache import ResultCache, StatFacts, WordFacts, content_key
from codemods.files import find_project_root, list_project_files
from codemods.legacy_helpers.discovery import DEFAULT_HELPER_NAME, FoundHelper, find_helpers
from codemods.legacy_helpers.equivalence import analyse_legacy_helpers
from codemods.limits import DEFAULT_LIMITS
from codemods.needles import NeedleIndex
from codemods.plan import Phase, Plan, PlanError, load_plan, plan_from_table, read_toml, select_rule_ids
from codemods.rules import all_rules
from codemods.rules.base import PoolshiftRule, RuleOptions
from codemods.transform import SourceError, decode_source

__all__ = [
    "FileStore",
    "Project",
    "ProjectSources",
    "decoded_sources",
    "load_project",
    "module_and_package",
]


@dataclass(frozen=True)
class Project:
    """Everything known before any file is transformed."""

    root: Path
    plan: Plan
    all_files: tuple[str, ...]  # every Python file of the project (for references and helper discovery)
    target_files: tuple[str, ...]  # the files under the user's PATH arguments, minus plan excludes
    rules: tuple[type[PoolshiftRule], ...]
    legacy_helpers: tuple[str, ...]
    #: What each legacy helper does differently from the shim, from the tree before this run: a helper's
    #: equivalence is a property of its definition, which no phase rewrites (only the cleanup deletes it).
    legacy_helper_differences: Mapping[str, tuple[str, ...]]
    shadowing_db_utils: tuple[str, ...]  # project files that would shadow the db_utils shim
    #: Where each legacy helper is defined and what it returns (for scan's one line per helper).
    found_helpers: tuple[FoundHelper, ...] = ()
    #: The same, limited to the helper's contract (connection or None); see RuleOptions.
    legacy_helper_contracts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    #: The files' bytes, read on first need and shared with the run (see FileStore).
    files: FileStore = field(kw_only=True, compare=False, repr=False)

    @property
    def needles(self) -> NeedleIndex:
        """The words found (or not) in each file's bytes so far: loading asks about ``connect``, the
        runner about the rules' words; a word is searched once per file version for the whole run."""
        return self.files.needles

    #: Per-path answers of module_of and phase_of: asked for every file in every phase of a run.
    _modules: dict[str, tuple[str, str]] = field(default_factory=dict, init=False, compare=False, repr=False)
    _phases: dict[str, Phase | None] = field(default_factory=dict, init=False, compare=False, repr=False)

    def module_of(self, relpath: str) -> tuple[str, str]:
        found = self._modules.get(relpath)
        if found is None:
            found = self._modules[relpath] = module_and_package(self.root, relpath)
        return found

    def phase_of(self, relpath: str) -> Phase | None:
        """``plan.phase_of``, remembered per path."""
        if relpath not in self._phases:
            self._phases[relpath] = self.plan.phase_of(relpath)
        return self._phases[relpath]

    def files_in(self, phase: Phase) -> list[str]:
        if phase.is_cleanup:
            return list(self.target_files)
        return [path for path in self.target_files if self.phase_of(path) == phase]

    def tree_files(self) -> list[str]:
        """Every non-excluded Python file of the project, whatever PATH arguments were given: where the
        TREE_WIDE rules run."""
        return [path for path in self.all_files if not self.plan.is_excluded(path)]

    def unassigned_files(self) -> list[str]:
        return [path for path in self.target_files if self.phase_of(path) is None]

    def rule_options(self) -> RuleOptions:
        """What every rule is told about the project (the runner adds the cleanup's remaining references)."""
        return RuleOptions(
            legacy_helpers=self.legacy_helpers,
            legacy_helper_differences=self.legacy_helper_differences,
            legacy_helper_contracts=self.legacy_helper_contracts,
            removable_helpers=tuple(
                helper
                for helper in self.legacy_helpers
                if helper in (self.plan.legacy_helpers or ())
                or helper.rpartition(".")[2] == DEFAULT_HELPER_NAME
            ),
            first_party=self._first_party,
        )

    @cached_property
    def _first_party(self) -> frozenset[str]:
        return frozenset(self.module_of(path)[0].partition(".")[0] for path in self.all_files)


def module_and_package(root: Path, relpath: str) -> tuple[str, str]:
    """Module and package names of a file, relative to ``root`` (or ``root/src`` for a src layout).

    Same result as ``libcst.helpers.calculate_module_and_package`` (which the rules' contract names),
    computed on the relative path so no filesystem access is needed per file.
    """
    parts = relpath.removesuffix(".py").split("/")
    if parts[0] == "src" and len(parts) > 1 and not (root / "src" / "__init__.py").exists():
        parts = parts[1:]
    if parts[-1] in ("__init__", "__main__"):
        name = ".".join(parts[:-1])
        return name, name
    return ".".join(parts), ".".join(parts[:-1])


class FileStore:
    """The project's files' bytes, each read when something first needs them, and what is known of them.

    A read is one ``open``, ``fstat`` (taken before reading: a change after it gives a newer stat later,
    so a stale entry is never mistaken for current) and ``read``; an ``OSError`` makes the file unreadable
    for the run, as before. The runner reuses these bytes while the file's stat is unchanged (and writes
    still compare the bytes on disk, see atomic_write).

    With ``facts`` (read-only runs with the cache on), a file whose stat signature is the one an earlier
    run recorded answers the text prefilter's questions, whether it decodes and its content key from the
    recorded facts without being read; the first question those cannot answer, or anything that needs the
    bytes, reads it as above. ``stats`` are the ``lstat`` results the listing took (see
    ``codemods.files.list_project_files``): the one ``stat`` per file such a run needs.
    """

    def __init__(
        self,
        root: Path,
        needles: NeedleIndex,
        facts: StatFacts | None = None,
        stats: Mapping[str, os.stat_result] | None = None,
    ) -> None:
        self.root = root
        self.needles = needles
        #: path -> (the fstat taken before reading, the bytes), or None when the file could not be read.
        self.snapshot: dict[str, tuple[os.stat_result, bytes] | None] = {}
        self._stats = stats or {}
        #: path -> its recorded facts, None once known to have none usable (or once read).
        self._known: dict[str, WordFacts | None] = {}
        self._facts = facts
        self._sizes: dict[str, int] = {}
        self._recorded_keys: dict[str, str] = {}
        #: Computed from the bytes read: path -> (those bytes, their content key / their text).
        self._keys: dict[str, tuple[bytes, str]] = {}
        self._texts: dict[str, tuple[bytes, str | None]] = {}

    def read(self, path: str) -> bytes | None:
        """``path``'s bytes as first read in this run (None: unreadable)."""
        if path not in self.snapshot:
            self.reread(path)
        entry = self.snapshot[path]
        return None if entry is None else entry[1]

    def reread(self, path: str) -> bytes | None:
        try:
            with open(f"{self.root}/{path}", "rb") as handle:
                info = os.fstat(handle.fileno())
                data = handle.read()
        except OSError:
            self.snapshot[path] = None
            self._known[path] = None
            return None
        self.snapshot[path] = (info, data)
        self._known[path] = None  # read: its bytes answer from now on
        return data

    @property
    def facts(self) -> StatFacts | None:
        return self._facts

    @facts.setter
    def facts(self, facts: StatFacts | None) -> None:
        """None: a run that writes reads every file it looks at, whatever was recorded."""
        self._facts = facts
        self._known.clear()

    def _recorded(self, path: str) -> WordFacts | None:
        """The recorded facts of an unread ``path``, when its stat says it is unchanged since."""
        known = self._known
        return known[path] if path in known else self._look_up(path)

    def _look_up(self, path: str) -> WordFacts | None:
        self._known[path] = None  # until found below; and for good once the file is read (see reread)
        if self._facts is None or path in self.snapshot:
            return None
        info = self._stats.get(path)
        if info is None:
            try:
                info = os.stat(f"{self.root}/{path}")
            except OSError:
                return None
        self._sizes[path] = info.st_size
        found = self._facts.lookup(path, info)
        if found is None:
            return None
        known, key = found
        if key is not None:
            self._recorded_keys[path] = key
        self._known[path] = known
        return known

    def recorded_answer(self, path: str, words: Sequence[bytes]) -> bool | None:
        """Whether the unread ``path`` holds one of ``words``, from recorded facts; None: read it to know."""
        known = self._known  # _recorded, inlined: asked of every file by every phase
        recorded = known[path] if path in known else self._look_up(path)
        if recorded is None:
            return None
        return recorded.answer(words if type(words) is tuple else tuple(words))

    def contains(self, path: str, words: Sequence[bytes]) -> bool:
        """Whether ``path``'s bytes hold one of ``words`` (False when it cannot be read)."""
        answer = self.recorded_answer(path, words)
        if answer is not None:
            return answer
        data = self.read(path)
        return data is not None and self.needles.contains(path, data, words)

    def utf8_by_default(self, path: str) -> bool:
        """No coding cookie in ``path`` (see _utf8_by_default); False when it cannot be read."""
        recorded = self._recorded(path)
        if recorded is not None:
            return recorded.utf8
        data = self.read(path)
        return data is not None and _utf8_by_default(data)

    def size(self, path: str) -> int | None:
        recorded = self._recorded(path)
        if recorded is not None:
            return self._sizes[path]
        data = self.read(path)
        return None if data is None else len(data)

    def text(self, path: str) -> str | None:
        """``path``'s text (:func:`_text_of` of its bytes), decoded once per version read; None when it
        cannot be read or does not decode."""
        data = self.read(path)
        return None if data is None else _of_this_version(self._texts, path, data, _text_of)

    def decodes(self, path: str) -> bool:
        """Whether ``path`` has a text: from recorded facts when they tell, else by decoding it."""
        recorded = self._recorded(path)
        if recorded is not None and recorded.decodes is not None:
            return recorded.decodes
        return self.text(path) is not None

    def content_key(self, path: str) -> str | None:
        """:func:`codemods.cache.content_key` of ``path``'s bytes: recorded for an unchanged unread file,
        else computed from the bytes (once per version read); None when it cannot be read."""
        if self._recorded(path) is not None and path in self._recorded_keys:
            return self._recorded_keys[path]
        data = self.read(path)
        return None if data is None else _of_this_version(self._keys, path, data, content_key)

    def save_facts(self) -> None:
        """Record what this run learnt of each file it read (facts of unread files are kept as they are)."""
        if self._facts is None:
            return
        for path, entry in self.snapshot.items():
            if entry is None:
                continue
            info, data = entry
            text, key = self._texts.get(path), self._keys.get(path)
            self._facts.record(
                path, info, self.needles.answers(path, data), _utf8_by_default(data),
                decodes=None if text is None or text[0] is not data else text[1] is not None,
                key=None if key is None or key[0] is not data else key[1],
            )  # fmt: skip
        self._facts.save()


def decoded_sources(files: Mapping[str, bytes]) -> dict[str, str]:
    """The text of each file that decodes; one that does not cannot define or use a resolvable helper."""
    texts = {path: _text_of(data) for path, data in files.items()}
    return {path: text for path, text in texts.items() if text is not None}


_T = TypeVar("_T")


def _of_this_version(
    cache: dict[str, tuple[bytes, _T]], path: str, data: bytes, derive: Callable[[bytes], _T]
) -> _T:
    """``derive(data)``, computed once per version of ``path`` read (the bytes object identifies it)."""
    known = cache.get(path)
    if known is None or known[0] is not data:
        known = cache[path] = (data, derive(data))
    return known[1]


def _text_of(data: bytes) -> str | None:
    """``data`` decoded as Python source (PEP 263, BOM), or None when it does not decode."""
    try:
        return decode_source(data).text
    except (SourceError, ValueError):
        return None


def _utf8_by_default(data: bytes) -> bool:
    """No coding cookie where PEP 263 looks (the first two lines, as ``tokenize.detect_encoding`` reads
    them): the file's text, if it has one, is its bytes decoded as UTF-8 (after a BOM)."""
    first = data.find(b"\n")
    end = len(data) if first < 0 else data.find(b"\n", first + 1)
    return b"coding" not in data[: len(data) if end < 0 else end]


class ProjectSources(Mapping[str, str]):
    """The text of each file that decodes (:func:`decoded_sources`), decoded only when first needed.

    Helper discovery asks every file whether its text mentions ``connect`` (or a helper's name), and
    nearly every file answers no: :meth:`mentions` answers that from the bytes (through the run's
    :class:`FileStore`: its recorded facts or its :class:`NeedleIndex`) when the file has no coding
    cookie, because in a file that decodes as UTF-8 a word is in the text exactly when its UTF-8 bytes are
    in the file. A cookie can name an encoding where that fails (``utf-7``, ``unicode_escape``: letters
    from escapes), so such a file is decoded first, as before. :meth:`content_key` names a file's content
    for discovery's cached answers, so an unchanged file's answers are found without reading it.
    """

    def __init__(self, files: FileStore, paths: Iterable[str]) -> None:
        self._files = files
        self._paths = dict.fromkeys(paths)
        self._encoded: dict[tuple[str, ...], tuple[bytes, ...]] = {}

    def _text(self, path: str) -> str | None:
        return self._files.text(path) if path in self._paths else None

    def __getitem__(self, path: str) -> str:
        text = self._text(path)
        if text is None:
            raise KeyError(path)
        return text

    def __iter__(self) -> Iterator[str]:
        return (path for path in self._paths if self._text(path) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def mentions(self, path: str, words: Collection[str]) -> bool:
        """Whether ``path`` has a text holding one of ``words`` (exactly; decoding only when it may)."""
        if path not in self._paths:
            return False
        if self._files.utf8_by_default(path):
            key = words if type(words) is tuple else tuple(words)
            encoded = self._encoded.get(key)
            if encoded is None:
                encoded = self._encoded[key] = tuple(word.encode("utf-8", "surrogatepass") for word in words)
            return self._files.contains(path, encoded) and self._files.decodes(path)
        text = self._text(path)
        return text is not None and any(word in text for word in words)

    def content_key(self, path: str) -> str | None:
        """What names ``path``'s content in cached answers (None: it cannot be read)."""
        return self._files.content_key(path) if path in self._paths else None


def _shadowing(root: Path, modules: Mapping[str, tuple[str, str]]) -> tuple[str, ...]:
    """Project files that Python would import as the top-level ``db_utils`` instead of the shim."""
    found = {path for path, (module, _) in modules.items() if module == "db_utils"}
    for candidate in ("db_utils.py", "db_utils/__init__.py", "src/db_utils.py", "src/db_utils/__init__.py"):
        if (root / candidate).is_file():
            found.add(candidate)
    return tuple(sorted(found))


def _selected_rules(
    plan: Plan, select: Sequence[str], ignore: Sequence[str]
) -> tuple[type[PoolshiftRule], ...]:
    rules = all_rules()
    selected = (*plan.select, *select)
    ids = select_rule_ids(rules, selected, (*plan.ignore, *ignore))
    # An opt-in rule needs its own ID: selecting a family (`PS1`) does not switch it on.
    return tuple(rules[rule_id] for rule_id in ids if rules[rule_id].DEFAULT_ENABLED or rule_id in selected)


def _legacy_helpers(
    root: Path,
    plan: Plan,
    files: Sequence[str],
    store: FileStore,
    modules: Mapping[str, tuple[str, str]],
    *,
    cache: ResultCache,
    max_bytes: int,
) -> tuple[tuple[FoundHelper, ...], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """The legacy helpers (found by behavior, plus the configured ones) and how each differs from the shim.

    Every file is read (a helper may have any name); :func:`find_helpers` summarises each file that
    mentions ``connect`` or a helper's name with ``ast`` and parses with LibCST only those that may define
    one, both through ``cache``. A configured helper poolshift did not find is kept, with no file or line.
    """
    # A file over the size limit is never parsed (the run reports it as file-too-large), here neither.
    sizes = {path: store.size(path) for path in files}
    parseable = [
        path for path, size in sizes.items() if size is not None and (not max_bytes or size <= max_bytes)
    ]
    sources = ProjectSources(store, parseable)
    names = {path: modules[path][0] for path in parseable}
    found = {helper.name: helper for helper in find_helpers(sources, names, cache)}
    for name in plan.legacy_helpers or ():
        found.setdefault(name, FoundHelper(name, "", 0, ()))
    helpers = tuple(sorted(found))
    # The analysis reads the helpers' own modules only (the last file of a module name wins, as before).
    defining = {helper.rpartition(".")[0] for helper in helpers}
    own = {path: module for path, module in names.items() if module in defining and path in sources}
    differences = analyse_legacy_helpers(sources, own, helpers)
    contracts = analyse_legacy_helpers(sources, own, helpers, contract_only=True)
    return tuple(found[name] for name in helpers), differences, contracts


def load_config_file(path: Path, root: Path) -> Plan:
    """The plan in a ``poolshift.toml`` (``--config``): the keys of ``[tool.poolshift]``, at top level.

    A file with a ``[tool.poolshift]`` table (a pyproject.toml passed as ``--config``) is read from there.
    Globs are relative to ``root`` (the file's directory unless ``--root`` says otherwise).
    """
    document = read_toml(path)
    tool = document.get("tool")
    table = tool["poolshift"] if isinstance(tool, dict) and "poolshift" in tool else document
    if not isinstance(table, dict):
        raise PlanError(f"{path}: [tool.poolshift] must be a table")
    return plan_from_table(table, root=root, config_path=path)


def load_project(
    targets: Sequence[Path],
    *,
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    root: Path | None = None,
    config: Path | None = None,
    exclude: Sequence[str] = (),
    cache: bool = True,
    read_only: bool = False,
    max_bytes: int = DEFAULT_LIMITS.max_bytes,
) -> Project:
    """Find the root and plan, list files, pick rules and legacy helpers. Raises ValueError subclasses.

    ``config`` replaces the pyproject.toml's ``[tool.poolshift]``; ``exclude`` globs add to the plan's.
    ``cache`` reads and writes the helper discovery's per-file answers in ``.poolshift_cache/``; a file
    over ``max_bytes`` (0: no limit) is not looked at for helpers. ``read_only`` (with ``cache``: scan,
    check, status) lets files unchanged since an earlier such run go unread (see FileStore); a run that
    writes always reads what it may rewrite.
    """
    if config is not None:
        config = config.resolve()
        root = (root or config.parent).resolve()
        plan = load_config_file(config, root)
    else:
        root = (root or find_project_root(targets)).resolve()
        plan = load_plan(root)
    if exclude:
        plan = replace(plan, exclude=(*plan.exclude, *exclude))
    stats: dict[str, os.stat_result] = {}
    all_files, under_targets = list_project_files(root, targets, stats)
    target_files = [path for path in under_targets if not plan.is_excluded(path)]
    rules = _selected_rules(plan, select, ignore)
    modules = {path: module_and_package(root, path) for path in all_files}
    results = ResultCache(root, enabled=cache)
    store = FileStore(root, NeedleIndex(), StatFacts(results) if cache and read_only else None, stats)
    found, differences, contracts = _legacy_helpers(
        root, plan, all_files, store, modules, cache=results, max_bytes=max_bytes
    )
    results.save()
    project = Project(
        root=root,
        plan=plan,
        all_files=tuple(all_files),
        target_files=tuple(target_files),
        rules=rules,
        legacy_helpers=tuple(helper.name for helper in found),
        found_helpers=found,
        legacy_helper_differences=differences,
        legacy_helper_contracts=contracts,
        shadowing_db_utils=_shadowing(root, modules),
        files=store,
    )
    project._modules.update(modules)  # its own memo, filled once here
    unassigned = project.unassigned_files()
    if unassigned and plan.config_path is not None:
        warning = (
            f"{len(unassigned)} file(s) belong to no phase of {plan.config_path.name} and are never "
            f"migrated (first: {unassigned[0]})"
        )
        project = replace(project, warnings=(warning,))
    return project
