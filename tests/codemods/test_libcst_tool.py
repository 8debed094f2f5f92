"""The rules are LibCST codemod commands: ``python -m libcst.tool codemod`` can run them directly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFIG = """\
generated_code_marker: "@generated"
formatter: []
blacklist_patterns: []
modules:
  - codemods.rules
repo_root: .
"""


def test_libcst_tool_runs_a_rule_by_module_and_class(tmp_path: Path) -> None:
    # libcst.tool finds commands as <module>.<Class> inside the modules listed in .libcst.codemod.yaml
    # (looked up from the working directory). The rule's (context, options=None) constructor is enough:
    # LibCST passes only the context plus the command's own add_args() arguments (none here).
    (tmp_path / ".libcst.codemod.yaml").write_text(CONFIG)
    target = tmp_path / "legacy.py"
    target.write_text("import sqlite3\n\n\ndef open_db(path):\n    return sqlite3.connect(path)\n")
    completed = subprocess.run(
        [sys.executable, "-m", "libcst.tool", "codemod", "--no-format", "sqlite3_connect.Sqlite3ConnectRule",
         str(target)],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "Transformed 1 files successfully" in completed.stderr
    assert (
        target.read_text()
        == "import db_utils.sqlite\n\n\ndef open_db(path):\n    return db_utils.sqlite.connect(path)\n"
    )
