"""The migration guide is executable: its examples are run through the rules, its code blocks are run.

Format (see CODEMODS_CONTRACT "Guide format" and migration_guide/README.md):
* ```` ```python before PS201 [path=app/x.py] ```` immediately followed by ```` ```python after PS201 ````:
  the rule must turn the first into the second, exactly;
* ```` ```python unchanged PS201 ````: the rule must leave it alone (and not fail on it);
* ```` ```python exec ````: runs in a subprocess with DATABASE_URL (and POSTGRES_*) pointing at the test
  PostgreSQL, and must exit 0;
* every reason code a rule declares has a ``### <code>`` heading on the rule's page.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from codemods.rules import all_rules
from codemods.rules.base import RuleOptions
from tests.codemods.harness import module_name_for, run_rules
from testservers.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "migration_guide"
DEFAULT_OPTIONS = RuleOptions(legacy_helpers=("app.db.get_postgres_connection",))
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    info: tuple[str, ...]
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    def option(self, name: str, default: str) -> str:
        for word in self.info:
            if word.startswith(f"{name}="):
                return word.partition("=")[2]
        return default


def blocks(page: Path) -> list[Block]:
    """Fenced code blocks of a markdown page, with their info-string words."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence, start = match["fence"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        found.append(Block(page, start + 1, tuple(match["info"].split()), "\n".join(body) + "\n"))
        i += 1
    return found


def pages() -> list[Path]:
    return sorted(GUIDE.rglob("*.md")) if GUIDE.is_dir() else []


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


@dataclass(frozen=True)
class Example:
    rule_id: str
    before: Block
    after: Block | None  # None: the example must be left unchanged


def examples() -> list[Example]:
    found: list[Example] = []
    for page in pages():
        page_blocks = blocks(page)
        for index, block in enumerate(page_blocks):
            kind = block.info[1] if len(block.info) >= 3 and block.info[0] == "python" else None
            if kind == "unchanged":
                found.append(Example(block.info[2], block, None))
            elif kind == "before":
                following = page_blocks[index + 1] if index + 1 < len(page_blocks) else None
                if following is None or following.info[:3] != ("python", "after", block.info[2]):
                    raise AssertionError(
                        f"{block.where}: a 'before' block must be followed by its 'after' block"
                    )
                found.append(Example(block.info[2], block, following))
    return found


EXAMPLES = examples()
EXEC_BLOCKS = [block for block in all_blocks() if block.info[:2] == ("python", "exec")]
RULES = all_rules()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.before.where for e in EXAMPLES])
def test_guide_example(example: Example) -> None:
    assert example.rule_id in RULES, f"{example.before.where}: unknown rule {example.rule_id}"
    path = example.before.option("path", "app/module.py")
    result = run_rules(
        example.before.code, [RULES[example.rule_id]], path=path, options=DEFAULT_OPTIONS,
        module_name=module_name_for(path)[0],
    )  # fmt: skip
    assert result.error is None, f"{example.before.where}: {result.error}: {result.error_detail}"
    if example.after is None:
        assert result.output is None, f"{example.before.where}: the rule changed an 'unchanged' example"
    else:
        actual = (result.output or example.before.code.encode()).decode()
        assert actual == example.after.code, (
            f"{example.before.where}: output differs from {example.after.where}"
        )


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_every_reason_code_is_documented(rule_id: str) -> None:
    page = GUIDE / "rules" / f"{rule_id}.md"
    assert page.is_file(), f"{rule_id} has no guide page {page.relative_to(REPO)}"
    headings = set(re.findall(r"^### +`?([a-z0-9-]+)`?\s*$", page.read_text(encoding="utf-8"), re.MULTILINE))
    missing = sorted(set(RULES[rule_id].REASON_CODES) - headings)
    assert not missing, f"{page.relative_to(REPO)} lacks '### <code>' sections for {missing}"


def test_the_guide_has_examples_for_every_rule_with_a_page() -> None:
    for page in sorted((GUIDE / "rules").glob("PS*.md")):
        assert any(e.rule_id == page.stem for e in EXAMPLES), f"{page.relative_to(REPO)} has no example"


@pytest.mark.postgres
@pytest.mark.parametrize("block", EXEC_BLOCKS, ids=[b.where for b in EXEC_BLOCKS])
def test_guide_exec_block_runs(block: Block, postgres: PostgresServer, tmp_path: Path) -> None:
    env = {**os.environ, **postgres.env(), "DATABASE_URL": postgres.url, "PYTHONPATH": str(REPO)}
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, f"{block.where} failed:\n{completed.stdout}\n{completed.stderr}"
