"""PS301 urlopen: ``urllib.request.urlopen(...)`` -> ``db_utils.http.urlopen(...)``.

``db_utils.http.urlopen`` is a full drop-in: it serves plain http(s) calls from a urllib3 pool and hands
everything else (other schemes, an installed global opener, proxies, ``cafile``/``capath``/``cadefault``) to
urllib unchanged. So unlike PS201 every argument list urlopen accepts is migratable, ``*args``/``**kwargs``
included; the rule reports only what it cannot resolve (a ``getattr`` lookup, a star import, a name that may
be something else), a reference used as a value, a module that monkeypatches ``urllib.request.urlopen``
itself, and argument lists urlopen itself would reject.

Name resolution, import handling and reporting are shared with PS201
(:class:`~codemods.rules._redirect.RedirectCallRule`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import libcst as cst

from codemods.cst.arguments import bind_arguments
from codemods.rules._redirect import COMMON_REASON_CODES, RedirectCallRule
from codemods.rules.base import Verdict

#: urlopen's parameters (3.10-3.12): url, data, timeout positional; the rest keyword-only. (3.13 dropped
#: cafile/capath/cadefault; the drop-in still accepts them and hands such calls to urllib.)
URLOPEN_POSITIONAL = ("url", "data", "timeout")
URLOPEN_KEYWORD_ONLY = ("context", "cafile", "capath", "cadefault")


class UrlopenRule(RedirectCallRule):
    """PS301: route ``urllib.request.urlopen`` through the pooled drop-in ``db_utils.http.urlopen``."""

    RULE_ID = "PS301"
    NAME = "urlopen"
    DESCRIPTION = "urllib.request.urlopen(...) -> db_utils.http.urlopen(...), keeping every argument"
    SAFETY = "guarded"
    #: "urllib" too: `getattr(urllib.request, name)` never spells urlopen but must still be reported.
    PREFILTER = ("urlopen", "urllib")
    REASON_CODES: ClassVar[Mapping[str, str]] = dict(COMMON_REASON_CODES)

    TARGETS = frozenset({"urllib.request.urlopen"})
    SOURCE_MODULES = frozenset({"urllib.request"})
    SHORT_NAME = "urlopen"
    REPLACEMENT_MODULE = "db_utils.http"
    VALUE_ADVICE = (
        "code that receives it may compare or patch it; pass db_utils.http.urlopen by hand if it is only "
        "called (the drop-in accepts the same arguments)"
    )
    DROP_IN_REACHES_STAND_INS = True

    def check_call(self, call: cst.Call) -> Verdict:
        bound = bind_arguments(call, URLOPEN_POSITIONAL, URLOPEN_KEYWORD_ONLY)
        if bound.problems:
            return Verdict(False, "unsupported-argument", "; ".join(bound.problems))
        if "url" not in bound.values and not bound.has_star:
            return Verdict(False, "unsupported-argument", "no url argument")
        return Verdict(True)

    def check_detached_call(self, call: cst.Call, stored_where: str | None) -> Verdict | None:
        return self.check_call(call)  # the argument list alone decides
