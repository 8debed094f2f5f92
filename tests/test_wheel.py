"""The wheel built from a clean clone ships every subpackage, and each public import path works from it.

``packages.find`` in pyproject.toml should make this automatic; the test is what keeps it so (a subpackage
without ``__init__.py``, or an include pattern that misses a new package, would otherwise ship a wheel that
fails only on the user's machine).
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


def test_every_public_path_imports_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    # The dependencies come from this interpreter's site-packages, appended after the fresh venv's own, so
    # db_utils and codemods can only be found in the wheel (the checkout is not on the path: cwd is tmp).
    dependencies = [p for p in sys.path if p.endswith("site-packages")]
    script = f"import sys; sys.path.extend({dependencies!r})\n" + "\n".join(PUBLIC_IMPORTS) + "\n"
    script += "import db_utils, codemods; print(db_utils.__file__); print(codemods.__file__)\n"
    command = [str(python), "-c", script]
    result = subprocess.run(command, check=False, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        assert line.startswith(str(env_dir)), f"imported from outside the wheel: {line}"
