"""PS104 psycopg3-connect: psycopg 3's per-call connects, reported with their own reason, never rewritten.

``psycopg.connect(...)``, ``psycopg.Connection.connect(...)`` and ``await
psycopg.AsyncConnection.connect(...)`` (and CockroachDB's ``psycopg.crdb`` ones) open a connection per
call exactly like ``psycopg2.connect``, but the shim pools psycopg2 connections only. A psycopg 3
connection is another library's object (``conn.execute``, pipelines, row factories, async), so handing
the caller a pooled psycopg2 connection instead would break it: there is nothing safe to rewrite. The
rule exists so that a codebase mixing both drivers sees every such call in the report, with
``psycopg3-not-supported`` and a page saying what to do instead (psycopg_pool).

Name resolution (``import psycopg as pg``, ``from psycopg import AsyncConnection``), star imports,
``getattr`` lookups, monkeypatches and references used as values are the redirect rules' shared machinery
(:class:`~codemods.rules._redirect.RedirectCallRule`), and the engine's first pass finds these calls by
the declared ``TARGETS`` like PS100's: the verdict on a resolved call is simply always "report".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import libcst as cst

from codemods.rules._redirect import COMMON_REASON_CODES, RedirectCallRule
from codemods.rules.base import Verdict

NOT_SUPPORTED = "psycopg3-not-supported"

#: The shared codes a call can get before its verdict (the rest are about rewriting, which never happens).
_SHARED_CODES = ("callee-as-value", "dynamic-callee", "ambiguous-callee", "monkeypatched", "star-import",
                 "ambiguous-module")  # fmt: skip

#: Why any psycopg 3 connect is left alone, and what to do instead.
_ADVICE = (
    "poolshift's shim pools psycopg2 connections only, so it is left as is: pool psycopg 3 connections "
    "with psycopg_pool's ConnectionPool (AsyncConnectionPool for AsyncConnection); see "
    "`poolshift explain psycopg3-not-supported`"
)
#: What every resolved call is told (one text, so the text report prints it once, as a note).
MESSAGE = f"this call opens a new psycopg 3 connection each time; {_ADVICE}"


class Psycopg3ConnectRule(RedirectCallRule):
    """PS104: report every call that opens a psycopg 3 connection; rewrite none."""

    RULE_ID = "PS104"
    NAME = "psycopg3-connect"
    DESCRIPTION = "psycopg (3) connect calls: reported (psycopg3-not-supported), never rewritten"
    SAFETY = "guarded"
    PREFILTER = ("psycopg",)
    REASON_CODES: ClassVar[Mapping[str, str]] = {
        NOT_SUPPORTED: (
            "a psycopg 3 connect: the shim pools psycopg2 only, so it is left as is; pool it with "
            "psycopg_pool's ConnectionPool"
        ),
        **{code: COMMON_REASON_CODES[code] for code in _SHARED_CODES},
    }

    # psycopg's own module paths (``psycopg.connection.Connection``) are left out on purpose: their
    # parts (``connection``) would make every project module of that name a look-alike of psycopg's.
    TARGETS = frozenset(
        {
            "psycopg.connect",
            "psycopg.Connection.connect",
            "psycopg.AsyncConnection.connect",
            "psycopg.crdb.connect",
            "psycopg.crdb.CrdbConnection.connect",
            "psycopg.crdb.AsyncCrdbConnection.connect",
        }
    )
    SOURCE_MODULES = frozenset({"psycopg", "psycopg.crdb"})
    SHORT_NAME = "connect"
    VALUE_ADVICE = "whatever calls it opens psycopg 3 connections, which the shim does not pool"

    def check_call(self, call: cst.Call) -> Verdict:
        return Verdict(False, NOT_SUPPORTED, MESSAGE)

    def check_detached_call(self, call: cst.Call, stored_where: str | None) -> Verdict | None:
        return self.check_call(call)

    def dynamic_lookup_message(self) -> str:
        return f"getattr on psycopg may return its connect, which opens a psycopg 3 connection; {_ADVICE}"

    @classmethod
    def ambiguous_module_message(cls, written: str, target: str) -> str:
        return (
            f"{written} may be {target}, which opens a psycopg 3 connection, but where its module comes from "
            f"cannot be known here; if it is psycopg2 under another name, import psycopg2 by name so PS100 "
            f"migrates it; if it is psycopg 3, {_ADVICE}"
        )

    def _star_message(self) -> str:
        return f"connect may come from a star import of psycopg (a psycopg 3 connect); {_ADVICE}"

    def _target_text(self) -> str:
        """How messages name the targets: several names, one thing (``connect`` of any of them)."""
        return "psycopg 3's connect"
