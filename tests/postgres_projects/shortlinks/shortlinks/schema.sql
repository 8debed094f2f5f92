CREATE TABLE links (
    code text PRIMARY KEY,
    target text NOT NULL,
    hits integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
