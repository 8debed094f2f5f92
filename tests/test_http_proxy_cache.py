"""The cached proxy lookup always answers what ``urllib.request.getproxies()`` answers right now.

db_utils.http reads the proxy environment once per call, like urllib, but keeps the answer while the
environment's names and proxy values are unchanged (see db_utils/http/route.py). These tests change
the environment in every way urllib's reader cares about and compare with urllib after each change.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db_utils.http import http_stats, route, urlopen
from db_utils.http.route import current_proxies
from testservers.http import PoolTestServer

# Names urllib's reader treats differently: either case, mixed case, the CGI rule's REQUEST_METHOD (which
# makes it ignore upper-case HTTP_PROXY), a no_proxy list, and a name it must ignore.
NAMES = ("http_proxy", "HTTP_PROXY", "Https_Proxy", "all_proxy", "no_proxy", "REQUEST_METHOD", "UNRELATED")
VALUES = ("", "http://127.0.0.1:9", "http://127.0.0.1:10", "localhost")
operations = st.lists(
    st.tuples(st.sampled_from(NAMES), st.one_of(st.none(), st.sampled_from(VALUES))), max_size=12
)


@contextlib.contextmanager
def restored_environment() -> Iterator[None]:
    """Put back every variable these tests touch (hypothesis runs many examples in one test call)."""
    saved = {name: os.environ.get(name) for name in NAMES}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@settings(max_examples=60, deadline=None)
@given(operations)
def test_matches_urllib_after_every_change(changes: list[tuple[str, str | None]]) -> None:
    with restored_environment():
        for name in NAMES:
            os.environ.pop(name, None)
        assert current_proxies() == urllib.request.getproxies()
        for name, value in changes:
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
            assert current_proxies() == urllib.request.getproxies(), (name, value)
            assert current_proxies() == urllib.request.getproxies()  # the cached answer too


def test_each_call_gets_its_own_dict(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("http_proxy", "http://127.0.0.1:9")
    first = current_proxies()
    first["http"] = "http://tampered.invalid"
    assert current_proxies() == {"http": "http://127.0.0.1:9"}


def test_a_replaced_getproxies_is_called_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([{"http": "http://127.0.0.1:9"}, {"https": "http://127.0.0.1:10"}])
    monkeypatch.setattr(urllib.request, "getproxies", lambda: next(answers))
    assert current_proxies() == {"http": "http://127.0.0.1:9"}
    assert current_proxies() == {"https": "http://127.0.0.1:10"}


def test_an_answer_read_while_the_environment_changed_is_not_kept(clean_env: pytest.MonkeyPatch) -> None:
    """Another thread sets a proxy while urllib reads the environment; after it is unset again, the
    answer read in between must not be served for the environment as it was before."""
    clean_env.delenv("http_proxy", raising=False)
    real_reader = urllib.request.getproxies_environment

    def reader_racing_a_setenv() -> dict[str, str]:
        os.environ["http_proxy"] = "http://127.0.0.1:9"
        return real_reader()

    # Both names: the shortcut only applies while urllib.request.getproxies is the reader it captured.
    clean_env.setattr(route, "_ENVIRONMENT_READER", reader_racing_a_setenv)
    clean_env.setattr(urllib.request, "getproxies", reader_racing_a_setenv)
    clean_env.setattr(route, "_cached", None)
    assert current_proxies() == {"http": "http://127.0.0.1:9"}
    del os.environ["http_proxy"]
    clean_env.setattr(route, "_ENVIRONMENT_READER", real_reader)
    clean_env.setattr(urllib.request, "getproxies", real_reader)
    assert current_proxies() == {}


def test_pooled_calls_follow_proxy_changes(
    http_server: PoolTestServer,
    http_server_factory: object,
    fresh_http_pool: pytest.MonkeyPatch,
) -> None:
    """Pooled, then a proxy appears (urllib's route, through the proxy), then it goes (pooled again)."""
    first_proxy, second_proxy = http_server_factory(), http_server_factory()  # type: ignore[operator]
    url = http_server.url + "/echo"

    def fetch() -> dict[str, object]:
        with urlopen(url) as response:
            payload: dict[str, object] = json.load(response)
        # A proxied call goes to urllib, whose first call stores a default opener holding the proxies of
        # that moment (routed as "opener" from then on, as urllib would): forget it, to see the pool's own
        # reading of the environment on every call.
        urllib.request.install_opener(None)
        return payload

    before = dict(http_stats()["fallbacks"])
    assert fetch()["proxied"] is False
    fresh_http_pool.setenv("http_proxy", first_proxy.url)
    assert fetch()["proxied"] is True
    fresh_http_pool.setenv("http_proxy", second_proxy.url)  # same name, new value
    assert fetch()["proxied"] is True
    fresh_http_pool.delenv("http_proxy")
    assert fetch()["proxied"] is False
    assert [len(p.requests_for("/echo")) for p in (first_proxy, second_proxy, http_server)] == [1, 1, 2]
    after = http_stats()["fallbacks"]
    assert {reason: after[reason] - before.get(reason, 0) for reason in after} == {
        **dict.fromkeys(after, 0),
        "proxy": 2,
    }
