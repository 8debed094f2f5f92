-- Schema of the order service. Applied by the deployment scripts (and by tests/conftest.py).
CREATE TABLE IF NOT EXISTS users (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS products (
    sku          text PRIMARY KEY,
    name         text NOT NULL,
    price_cents  integer NOT NULL CHECK (price_cents >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id          serial PRIMARY KEY,
    user_id     integer NOT NULL REFERENCES users (id),
    status      text NOT NULL DEFAULT 'new',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS order_items (
    order_id     integer NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    sku          text NOT NULL REFERENCES products (sku),
    quantity     integer NOT NULL CHECK (quantity > 0),
    price_cents  integer NOT NULL,
    PRIMARY KEY (order_id, sku)
);

CREATE TABLE IF NOT EXISTS audit_log (
    id          serial PRIMARY KEY,
    event       text NOT NULL,
    detail      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
