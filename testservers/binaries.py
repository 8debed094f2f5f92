"""The server binaries the tests run (nginx, PgBouncer): one rule for where to look and how to stop them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path


def find_binary(name: str, variable: str, package: str, missing: type[Exception]) -> Path:
    """``$variable``, else ``name`` on PATH, else Debian's ``/usr/sbin/<name>`` (not on a user's PATH).

    Raises ``missing`` naming where it looked and the Debian package that has it.
    """
    explicit = os.environ.get(variable)
    candidates = [explicit] if explicit else [shutil.which(name), f"/usr/sbin/{name}"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise missing(
        f"{name} not found (looked at ${variable}, PATH and /usr/sbin/{name}); install the Debian "
        f"package '{package}'"
    )


def stop_process(process: subprocess.Popen[bytes], how: signal.Signals, timeout: float) -> None:
    """Send ``how`` (the server's own shutdown signal), wait up to ``timeout`` seconds, then kill."""
    if process.poll() is not None:
        return
    process.send_signal(how)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
