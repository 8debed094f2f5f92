"""Imports poolshift adds land where isort and ruff put them: real ``ruff check --select I`` and isort.

Each fixture is clean for both tools before migration (asserted, so a fixture cannot rot) and must be
clean after ``poolshift migrate`` through the real CLI; the rewrite itself is asserted too, so a test
that passes because nothing was migrated is impossible.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.codemods.test_cli import make_tree, poolshift

BIN = Path(sys.executable).parent

FIXTURES: dict[str, str] = {
    "stdlib_only": """\
import os
import sqlite3


def open_db(name):
    return sqlite3.connect(os.path.join("data", name))
""",
    "three_groups": """\
import os
import sqlite3

import requests
import yaml

from app import models


def open_db(name):
    requests.get(name)
    return sqlite3.connect(os.path.join(yaml.__name__, models.__name__))
""",
    "future_and_docstring": '''\
"""Storage for the shop."""

from __future__ import annotations

import sqlite3

from app import models


def open_db(name: str) -> sqlite3.Connection:
    return sqlite3.connect(models.path(name))
''',
    "conditional": """\
import sqlite3
import urllib.request

try:
    import ujson as json
except ImportError:
    import json


def fetch(url):
    return json.loads(urllib.request.urlopen(url).read())


def open_db(path):
    return sqlite3.connect(path)
""",
    "from_import_retargeted": """\
import os
from urllib.request import urlopen

import requests

from app import models


def fetch(url):
    return urlopen(url, timeout=os.cpu_count()).read() + requests.__name__ + models.__name__
""",
    "third_party_after_shim_name": """\
import sqlite3

import attrs
import zope


def open_db(path):
    return sqlite3.connect(path), attrs, zope
""",
}


def _tools_agree(root: Path, path: str) -> None:
    ruff = subprocess.run(
        [str(BIN / "ruff"), "check", "--isolated", "--select", "I", path],
        cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ruff.returncode == 0, ruff.stdout + (root / path).read_text()
    isort = subprocess.run(
        [str(BIN / "isort"), "--profile", "black", "--check-only", "--diff", path],
        cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert isort.returncode == 0, isort.stdout + isort.stderr


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_migrated_imports_stay_sorted(tmp_path: Path, name: str) -> None:
    path = f"app/{name}.py"
    root = make_tree(tmp_path / "shop", {path: FIXTURES[name].encode(), "app/models.py": b""})
    _tools_agree(root, path)
    completed = poolshift("migrate", path, "--all", cwd=root)
    assert completed.returncode == 0, completed.stdout.decode()
    after = (root / path).read_text()
    assert "db_utils" in after
    _tools_agree(root, path)
