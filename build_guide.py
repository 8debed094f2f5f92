"""Build step: the wheel carries the guide pages ``poolshift explain`` prints, copied from their one home.

``migration_guide/`` stays the only copy in the repository; setuptools runs this ``build_py``
(``[tool.setuptools.cmdclass]`` in pyproject.toml), which copies the guide's index and rule pages into the
built ``codemods`` package as ``codemods/_guide/`` (:func:`codemods.guide.guide_dir` reads them there in an
installed wheel). An editable install reads ``migration_guide/`` itself, so nothing is copied for it. A
build without the guide (an sdist missing it) fails, rather than ship an ``explain`` without its pages.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools.command.build_py import build_py  # type: ignore[import-untyped]  # no stubs installed

GUIDE = Path(__file__).resolve().parent / "migration_guide"
#: Where the pages go inside the ``codemods`` package (codemods/guide.py: ``PACKAGED_GUIDE``).
PACKAGED = "_guide"
#: The pages explain reads: the index (its "Suppressions" section) and every rule page.
PAGES = ("README.md", "rules/*.md")


class BuildPyWithGuide(build_py):  # type: ignore[misc]  # setuptools ships no type hints here
    """setuptools' ``build_py``, plus the guide pages copied into ``codemods/_guide/``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        pages = sorted({page for pattern in PAGES for page in GUIDE.glob(pattern)})
        if not (GUIDE / "README.md").is_file() or not any(page.parent.name == "rules" for page in pages):
            raise FileNotFoundError(f"{GUIDE}: the guide's pages are missing; `poolshift explain` needs them")
        target = Path(self.build_lib) / "codemods" / PACKAGED
        for page in pages:
            destination = target / page.relative_to(GUIDE)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(page, destination)
