import datetime
import logging

from salesreports import reports


def audit_lines(caplog):
    # psycopg2 logs the query exactly as sent to the server, as bytes
    return [r.msg for r in caplog.records if r.name == "salesreports.sql"]


def seed():
    for region, cents, day in [
        ("north", 1200, datetime.date(2024, 1, 5)),
        ("north", 800, datetime.date(2024, 2, 9)),
        ("south", 2500, datetime.date(2024, 2, 11)),
        ("south", 100, datetime.date(2023, 12, 31)),
        ("west", 800, datetime.date(2024, 3, 1)),
    ]:
        reports.record_sale(region, cents, day)


def test_revenue_by_region():
    seed()
    assert reports.revenue_by_region(2024) == {"south": 2500, "north": 2000, "west": 800}
    assert reports.revenue_by_region(2023) == {"south": 100}
    # sales keep being recorded after a (read-only) report
    reports.record_sale("west", 200, datetime.date(2024, 5, 1))
    assert reports.revenue_by_region(2024)["west"] == 1000


def test_best_month():
    seed()
    assert reports.best_month("north") == "2024-01"
    assert reports.best_month("east") is None


def test_every_statement_is_audited_with_its_parameters(caplog):
    with caplog.at_level(logging.DEBUG, logger="salesreports.sql"):
        reports.record_sale("east", 999, datetime.date(2024, 4, 1))
    audited = audit_lines(caplog)
    assert audited == [
        b"INSERT INTO sales (region, amount_cents, sold_on) VALUES ('east', 999, '2024-04-01'::date)"
    ]


def test_report_queries_are_audited_once_each(caplog):
    seed()
    with caplog.at_level(logging.DEBUG, logger="salesreports.sql"):
        reports.revenue_by_region(2024)
        reports.best_month("south")
    audited = audit_lines(caplog)
    assert len(audited) == 2
    assert audited[0].startswith(b"SELECT region, sum(amount_cents) FROM sales")
    assert b"WHERE region = 'south'" in audited[1]
