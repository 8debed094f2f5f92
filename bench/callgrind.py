"""What the ``callgrind_*`` scripts share: running one contender under callgrind and their command line.

Each script names its contenders and builds each one's operation; this module runs the script again as
a child under ``valgrind --tool=callgrind`` with collection on only inside the C function ``map_next``
(the child warms up, then runs ``list(map(operation, range(N)))``), so exactly the N operations are
counted, and saves the results beside the other benchmarks' documents.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["WARM_UP_OPS", "count_in", "main", "require_valgrind", "save"]

WARM_UP_OPS = 20
# Collection is on only inside this C function of CPython: the child's measured loop runs in it.
COLLECT_INSIDE = "map_next"


def require_valgrind() -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")


def count_in(
    script: Path, index: int, name: str, ops: int, env: dict[str, str], workdir: Path, top: int
) -> dict[str, Any]:
    """Run ``script --child name --ops ops`` under callgrind, counting only inside ``COLLECT_INSIDE``."""
    out = workdir / f"callgrind.{index}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        f"--toggle-collect={COLLECT_INSIDE}",
        f"--callgrind-out-file={out}",
        sys.executable,
        str(script.resolve()),
        "--child",
        name,
        "--ops",
        str(ops),
    ]
    subprocess.run(command, env=env, check=True, capture_output=True)
    total = _total_instructions(out.read_text())
    result: dict[str, Any] = {"name": name, "instructions": total, "per_op": round(total / ops)}
    if top:
        result["top"] = _top_functions(out, top)
    return result


def _total_instructions(profile: str) -> int:
    match = re.search(r"^(?:summary|totals):\s*(\d+)", profile, re.MULTILINE)
    if match is None:
        raise RuntimeError("callgrind wrote no instruction total")
    return int(match.group(1))


def _top_functions(out: Path, top: int) -> list[str]:
    """The ``top`` C functions by instructions executed in themselves (callgrind_annotate's list)."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(out)], check=True, capture_output=True, text=True
    ).stdout
    lines = [line.strip() for line in text.splitlines() if re.match(r"^\s*[\d,]+ \(", line)]
    return [line for line in lines if "PROGRAM TOTALS" not in line][:top]


def save(benchmark: str, ops: int, results: list[dict[str, Any]], notes: dict[str, str]) -> dict[str, Any]:
    """Write ``bench/results/<benchmark>.json`` with the machine's description; return the document."""
    from bench.common import environment, write_document

    document = {"benchmark": benchmark, "ops": ops, **environment(), "results": results, "notes": notes}
    write_document(benchmark, document)
    return document


def main(
    argv: list[str] | None,
    *,
    description: str | None,
    default_ops: int,
    ops_help: str,
    extra_flag: tuple[str, str],
    child: Callable[[str, int], None],
    run: Callable[[int, int, bool], object],
) -> None:
    """The scripts' command line: ``[--ops N] [--top K] [<extra flag>]``, and the hidden ``--child``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", type=int, default=default_ops, help=ops_help)
    parser.add_argument("--top", type=int, default=0, help="also list each contender's top K C functions")
    flag, flag_help = extra_flag
    parser.add_argument(flag, dest="extra", action="store_true", help=flag_help)
    parser.add_argument("--child", metavar="CONTENDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.ops)
    else:
        run(args.ops, args.top, args.extra)
