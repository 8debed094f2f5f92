"""The wheel built from a clean clone ships every subpackage, and each public import path works from it.

``packages.find`` in pyproject.toml should make this automatic; the test is what keeps it so (a subpackage
without ``__init__.py``, or an include pattern that misses a new package, would otherwise ship a wheel that
fails only on the user's machine). ``poolshift explain`` must print the guide's pages from the installed
wheel too: the build copies them in (build_guide.py), and the test runs the command there.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_IMPORTS = (
    "import db_utils; db_utils.__all__",
    "from db_utils import ConfigError, get_postgres_connection, get_pooled_connection",
    "from db_utils.sqlite import connect",
    "from db_utils.http import urlopen",
    "import db_utils.postgres",
    "import codemods.cli",
)

pytestmark = pytest.mark.slow


def shipped_packages(root: Path) -> set[str]:
    """Every package directory of db_utils and codemods in the committed tree."""
    tracked = subprocess.run(
        ["git", "ls-files", "db_utils", "codemods"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.split()
    return {str(Path(name).parent) for name in tracked if name.endswith("__init__.py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(work),
            str(clone),
        ],
        check=True,
    )
    (built,) = work.glob("poolshift-*.whl")
    return built


def test_the_wheel_contains_every_package(wheel: Path) -> None:
    clone_packages = shipped_packages(wheel.parent / "clone")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {str(Path(name).parent) for name in archive.namelist() if name.endswith("__init__.py")}
    assert clone_packages, "no packages found in the clone"
    assert clone_packages <= in_wheel, f"missing from the wheel: {sorted(clone_packages - in_wheel)}"
    assert not {name for name in in_wheel if name.split("/")[0] in {"tests", "testservers", "bench"}}


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (no dependencies: see :func:`run_installed`)."""
    env_dir = tmp_path_factory.mktemp("installed") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    return env_dir


def run_installed(env_dir: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in the installed venv, from ``cwd`` (not the checkout, so it is not on the path).

    The dependencies come from this interpreter's site-packages, appended after the fresh venv's own, so
    db_utils and codemods can only be found in the wheel.
    """
    dependencies = [p for p in sys.path if p.endswith("site-packages")]
    script = f"import sys; sys.path.extend({dependencies!r})\n" + code
    command = [str(env_dir / "bin" / "python"), "-c", script]
    return subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True)


def test_every_public_path_imports_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    script = "\n".join(PUBLIC_IMPORTS) + "\n"
    script += "import db_utils, codemods; print(db_utils.__file__); print(codemods.__file__)\n"
    result = run_installed(installed, script, tmp_path)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        assert line.startswith(str(installed)), f"imported from outside the wheel: {line}"


def test_explain_prints_the_guide_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    def explain(code: str) -> str:
        script = f"from codemods.cli import main; raise SystemExit(main(['explain', {code!r}]))\n"
        result = run_installed(installed, script, tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    guide = ROOT / "migration_guide"
    for page in sorted((guide / "rules").glob("*.md")):
        assert explain(page.stem) == page.read_text(encoding="utf-8"), page.name
    section = explain("memory-database")
    assert section.startswith("# memory-database (PS201, sqlite3-connect)\n\n### memory-database\n")
    assert "full page:" not in section  # the page's own text, not the one-line fallback
    assert explain("unused-suppression").startswith("### unused-suppression")


def test_the_guide_has_one_home_in_the_repository(wheel: Path) -> None:
    """The wheel's copy is made at build time: the repository never holds a second one."""
    tracked = subprocess.run(
        ["git", "ls-files", "codemods"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    assert not [name for name in tracked if name.endswith(".md")]
    with zipfile.ZipFile(wheel) as archive:
        pages = {name for name in archive.namelist() if name.startswith("codemods/_guide/")}
    expected = {"codemods/_guide/README.md"} | {
        f"codemods/_guide/rules/{page.name}" for page in (ROOT / "migration_guide" / "rules").glob("*.md")
    }
    assert pages == expected
