"""The SQLite file cache: values survive between calls (and processes), expire, and are visible to any
other connection to the same file."""

import sqlite3
import threading

from legacy_app import cache


def test_roundtrip_of_json_values():
    value = {"sku": "TEA-1", "tags": ["green", "loose"], "price": 4.5, "stock": None}

    cache.set("product:TEA-1", value, ttl=60)

    assert cache.get("product:TEA-1") == value


def test_missing_key_gives_default():
    assert cache.get("nope") is None
    assert cache.get("nope", default=[]) == []


def test_expired_entry_is_a_miss_and_purged():
    cache.set("old", 1, ttl=-1)
    cache.set("fresh", 2, ttl=3600)
    cache.set("forever", 3)

    assert cache.get("old", "gone") == "gone"
    assert cache.keys() == ["forever", "fresh"]
    assert cache.purge_expired() == 1
    assert cache.purge_expired() == 0


def test_overwrite_and_delete():
    cache.set("k", "first")
    cache.set("k", "second")
    assert cache.get("k") == "second"

    cache.delete("k")

    assert cache.get("k") is None
    cache.delete("never-existed")  # not an error


def test_writes_are_committed_to_the_file():
    cache.set("k", {"a": 1})

    with sqlite3.connect(cache.cache_path()) as other:
        rows = other.execute("SELECT key, value FROM cache").fetchall()
    other.close()

    assert rows == [("k", '{"a": 1}')]


def test_entry_written_by_another_process_is_read():
    cache.set("warm-up", True)  # creates the table
    other = sqlite3.connect(cache.cache_path())
    with other:
        other.execute("INSERT INTO cache (key, value, expires_at) VALUES ('ext', '[1, 2]', NULL)")
    other.close()

    assert cache.get("ext") == [1, 2]


def test_concurrent_writers_from_threads_lose_nothing():
    errors = []

    def writer(n):
        try:
            for i in range(10):
                cache.set("t%d-%d" % (n, i), i)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(cache.keys()) == 40
