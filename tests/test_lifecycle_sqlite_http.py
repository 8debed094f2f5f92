"""SQLite pools and the HTTP pool manager tell db_utils.stats listeners their creation and disposal."""

from __future__ import annotations

import pytest

import db_utils
import db_utils.sqlite
from db_utils import stats
from db_utils.http import urlopen


@pytest.mark.parametrize("calls", [1, 20])
def test_created_once_and_disposed_under_the_names_pool_status_uses(tmp_path, http_server, calls):
    db_utils.dispose_pools()
    seen: list[stats.PoolEvent] = []
    remove = stats.add_listener(seen.append)
    try:
        for _ in range(calls):
            db_utils.sqlite.connect(str(tmp_path / "lifecycle.db")).close()
            with urlopen(http_server.url + "/echo") as response:
                response.read()
        (sqlite_name,) = db_utils.pool_status()["sqlite"]["databases"]
        # Once per pool, not per connection or request.
        assert [(e.kind, e.event, e.pool) for e in seen] == [
            ("sqlite", "created", sqlite_name),
            ("http", "created", stats.HTTP_POOL_NAME),
        ]
        db_utils.dispose_pools()
    finally:
        remove()
    assert sorted((e.kind, e.event, e.pool) for e in seen[2:]) == [
        ("http", "disposed", stats.HTTP_POOL_NAME),
        ("sqlite", "disposed", sqlite_name),
    ]
