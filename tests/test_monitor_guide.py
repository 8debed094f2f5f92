"""migration_guide/monitoring.md stays true: its figure table is FIGURES, and its framework examples run.

Blocks tagged ```` ```python requires=<module> [serve=wsgi|asgi] ```` run in a subprocess when ``<module>``
is installed (Flask, Django and FastAPI are not dependencies: without them the block is skipped). With
``serve=``, the block defines the application and the test serves it on 127.0.0.1 and asks the mounted
monitor for ``/monitor/connection-pools`` and ``/monitor/nope`` (which only the monitor answers with its
own 404 document). The ``python exec`` blocks are run by tests/codemods/test_guide.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from db_utils.monitor.figures import FIGURES
from tests.codemods.test_guide import Block, blocks

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "migration_guide" / "monitoring.md"
RUNNABLE = [block for block in blocks(PAGE) if block.info[:1] == ("python",) and block.option("requires", "")]

# Django needs settings before its first request object exists; the block is the URL configuration.
PRELUDE = {
    "django": """
        import django
        from django.conf import settings
        settings.configure(ROOT_URLCONF="__main__", ALLOWED_HOSTS=["127.0.0.1"], SECRET_KEY="guide-test")
        django.setup()
    """,
}
APPLICATION = {
    "django": """
        from django.core.wsgi import get_wsgi_application
        app = get_wsgi_application()
    """,
}
ASK = """
    import json, urllib.error, urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base + "/monitor/connection-pools", timeout=60) as response:
        assert response.status == 200 and "pools" in json.load(response)
    try:
        opener.open(base + "/monitor/nope", timeout=60)
        raise AssertionError("no 404")
    except urllib.error.HTTPError as error:
        assert error.code == 404 and "endpoints" in json.load(error)
"""
SERVE = {
    "wsgi": """
        import threading
        from wsgiref.simple_server import make_server
        server = make_server("127.0.0.1", 0, app)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
    """,
    "asgi": """
        import socket, threading, time
        import uvicorn
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn not ready"
            time.sleep(0.01)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    """,
}


def script_for(block: Block) -> str:
    module = block.option("requires", "")
    parts = [PRELUDE.get(module, ""), block.code, APPLICATION.get(module, "")]
    serve = block.option("serve", "")
    if serve:
        parts += [SERVE[serve], ASK]
    return "\n".join(textwrap.dedent(part) for part in parts)


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_framework_example_runs(block: Block, tmp_path: Path) -> None:
    needed = [block.option("requires", "")] + (["uvicorn"] if block.option("serve", "") == "asgi" else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        # They are in the dev extra: in CI a missing one is a broken install, never a silent skip.
        report = pytest.fail if os.environ.get("CI") else pytest.skip
        report(f"{', '.join(missing)} not installed (the dev extra has it; not a poolshift dependency)")
    script = tmp_path / "example.py"
    script.write_text(script_for(block), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert completed.returncode == 0, f"{block.where} failed:\n{completed.stdout}\n{completed.stderr}"


def test_the_guide_has_every_framework_example() -> None:
    assert {block.option("requires", "") for block in RUNNABLE} >= {"flask", "django", "fastapi"}


def test_the_figure_table_is_the_figures_table() -> None:
    rows = [line for line in PAGE.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    documented = {row.split("`")[1]: row for row in rows}
    for figure in FIGURES:
        assert figure.key in documented, f"figure {figure.key} is not documented in {PAGE.name}"
        row = documented[figure.key]
        if figure.metric is None:
            assert row.rstrip().endswith("| — |"), row
        else:
            exposed = figure.metric + ("_total" if figure.kind == "counter" else "")
            assert row.rstrip().endswith(f"| `{exposed}` |"), row
