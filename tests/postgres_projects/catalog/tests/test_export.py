from decimal import Decimal

import pytest
from catalog import export


def test_export_selected_columns():
    assert export.export_products(["sku", "price"]) == [
        {"sku": "CHAIR-1", "price": Decimal("79.90")},
        {"sku": "DESK-2", "price": Decimal("399.00")},
    ]


def test_export_specs_keep_exact_decimals():
    rows = export.export_products(["sku", "specs"])
    assert rows[0]["specs"] == {"weight_kg": Decimal("6.25"), "box": [50, 50, 90]}
    assert isinstance(rows[1]["specs"]["weight_kg"], Decimal)


def test_unknown_column_is_refused():
    with pytest.raises(ValueError, match="not exportable: cost"):
        export.export_products(["sku", "cost"])


def test_shipping_calculator_gets_floats_even_after_an_export():
    export.export_products(["specs"])
    specs = export.shipping_specs("DESK-2")
    assert specs == {"weight_kg": 31.5, "box": [160, 80, 20]}
    assert isinstance(specs["weight_kg"], float)


def test_missing_product():
    assert export.shipping_specs("NOPE") is None
