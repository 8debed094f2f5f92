import os
import socket

import pytest
from inventory import stock


def test_settings_come_from_the_dotenv_file():
    # nothing in the CI environment sets these: load_dotenv() read them from .env
    assert os.environ["POSTGRES_DATABASE"]
    assert os.environ["DB_HOSTNAME"] == "127.0.0.1"


def test_receiving_adds_up():
    stock.receive("BOLT-M6", 100)
    stock.receive("BOLT-M6", 50)
    assert stock.on_hand("BOLT-M6") == 150


def test_shipping_removes_stock_and_records_the_movement():
    stock.receive("NUT-M6", 20)
    stock.ship("NUT-M6", 15)
    assert stock.on_hand("NUT-M6") == 5
    assert stock.history("NUT-M6") == [(20, "received"), (-15, "shipped")]


def test_cannot_ship_more_than_on_hand():
    stock.receive("WASHER", 3)
    with pytest.raises(stock.OutOfStock, match="3 on hand, 4 requested"):
        stock.ship("WASHER", 4)
    assert stock.on_hand("WASHER") == 3
    assert stock.history("WASHER") == [(3, "received")]


def test_unknown_sku():
    assert stock.on_hand("NOPE") == 0
    with pytest.raises(stock.OutOfStock):
        stock.ship("NOPE", 1)


def test_running_low_report():
    for sku, quantity in [("A", 1), ("B", 10), ("C", 4)]:
        stock.receive(sku, quantity)
    stock.ship("B", 8)
    assert stock.running_low(5) == ["A", "B", "C"]
    assert stock.running_low(2) == ["A"]


def test_database_down_shows_unknown_stock(monkeypatch, caplog):
    stock.receive("GLUE", 7)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("DB_PORTNUMBER", str(closed_port))
    assert stock.on_hand("GLUE") is None
    assert stock.running_low(100) == []
    assert "inventory database unreachable" in caplog.text
    monkeypatch.undo()
    assert stock.on_hand("GLUE") == 7
