from decimal import Decimal

import pytest
from ledger import accounts


def test_transfer_moves_money_and_writes_both_entries():
    accounts.open_account("alice", Decimal("100.00"))
    accounts.open_account("bob")
    accounts.transfer("alice", "bob", Decimal("30.50"), "dinner")
    assert accounts.balance("alice") == Decimal("69.50")
    assert accounts.balance("bob") == Decimal("30.50")
    assert accounts.statement("bob") == [{"amount": Decimal("30.50"), "memo": "dinner"}]


def test_insufficient_funds_changes_nothing():
    accounts.open_account("carol", Decimal("10.00"))
    accounts.open_account("dave")
    with pytest.raises(accounts.InsufficientFunds):
        accounts.transfer("carol", "dave", Decimal("10.01"), "too much")
    assert accounts.balance("carol") == Decimal("10.00")
    assert accounts.statement("dave") == []


def test_failed_transfer_to_unknown_account_is_rolled_back():
    accounts.open_account("erin", Decimal("5.00"))
    with pytest.raises(Exception, match="foreign key"):
        accounts.transfer("erin", "nobody", Decimal("1.00"), "typo")
    assert accounts.balance("erin") == Decimal("5.00")


def test_statement_rows_are_dicts_in_order():
    accounts.open_account("frank", Decimal("1.00"))
    accounts.open_account("gina", Decimal("1.00"))
    accounts.transfer("frank", "gina", Decimal("0.25"), "coffee")
    accounts.transfer("gina", "frank", Decimal("0.10"), "change")
    assert accounts.statement("frank") == [
        {"amount": Decimal("1.00"), "memo": "opening balance"},
        {"amount": Decimal("-0.25"), "memo": "coffee"},
        {"amount": Decimal("0.10"), "memo": "change"},
    ]


def test_plain_queries_return_tuples_after_a_statement():
    # the dict cursor of statement() must not leak into other queries
    accounts.open_account("hank", Decimal("2.00"))
    accounts.statement("hank")
    assert accounts.balance("hank") == Decimal("2.00")


def test_connections_identify_the_service():
    assert accounts.application_name() == "ledger"
