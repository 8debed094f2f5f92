"""One structured log line per state change: ``key=value`` pairs (logfmt), the same fields as ``extra``.

Plain-text handlers get a line that log search tools split into fields; JSON formatters find the fields
under ``record.poolshift``. Only figures and names are logged: pool names are password-free by
construction (``pool_status()`` keys), and request data (headers, tokens) never reaches this module.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("db_utils.monitor")


def log_event(level: int, event: str, **fields: Any) -> None:
    """Log ``event=<event> key=value ...`` at ``level`` on the ``db_utils.monitor`` logger."""
    if not logger.isEnabledFor(level):
        return
    fields = {"event": event, **fields}
    line = " ".join(f"{key}={_value(value)}" for key, value in fields.items())
    logger.log(level, "%s", line, extra={"poolshift": fields})


def _value(value: Any) -> str:
    text = "null" if value is None else str(value)
    if text and not any(char in text for char in ' "=\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'
