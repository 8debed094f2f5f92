"""The PATHs of one command line grouped by their configuration, the way ruff groups files.

A monorepo's packages each have their own configuration, and pre-commit hands poolshift the staged files
of all of them at once. So each path belongs to its closest configuration file
(:func:`codemods.files.find_config_file`) and that file's project root, and each group is one run with its
own settings; the command prints one report of all of them. A directory named on the command line is
searched for configuration files inside it too (ruff's nested configurations): each starts a group of its
own subtree. A group whose root lies inside another group's root is left out of the outer one (as an
exclude), so no file is judged twice, and each by its own configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from codemods.files import config_files_below, find_config_file, find_project_root

__all__ = ["Group", "group_paths"]


@dataclass(frozen=True)
class Group:
    """Paths that share a configuration file (None: no file, the defaults) and a project root."""

    config: Path | None
    root: Path
    paths: tuple[Path, ...]
    #: Other groups' roots inside this one, as globs relative to ``root`` (``pkg/``): theirs, not this one's.
    nested: tuple[str, ...] = ()


def group_paths(paths: Sequence[Path], *, root: Path | None = None) -> list[Group]:
    """``paths`` grouped by closest configuration and project root, in the order they were given.

    ``root`` (``--root``) stops the configuration search and is every group's root, as for one path.
    """
    members: dict[tuple[Path | None, Path], list[Path]] = {}
    for path in paths:
        config = find_config_file([path], stop=root)
        base = root or (config.parent if config is not None else find_project_root([path]))
        members.setdefault((config, base.resolve()), []).append(path)
        if root is None and path.is_dir():
            # ruff's nested configurations: a package's own file inside a directory named here applies
            # to that package's subtree (its group excludes it from this one, below).
            for inner in config_files_below(path):
                if inner != config:
                    members.setdefault((inner, inner.parent.resolve()), []).append(inner.parent)
    roots = {base for _, base in members}
    return [
        Group(
            config,
            base,
            tuple(grouped),
            tuple(
                sorted(inner.relative_to(base).as_posix() + "/" for inner in roots if base in inner.parents)
            ),
        )
        for (config, base), grouped in members.items()
    ]
