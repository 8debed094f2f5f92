CREATE TABLE tickets (
    id serial PRIMARY KEY,
    subject text NOT NULL,
    requester text NOT NULL,
    priority text NOT NULL DEFAULT 'normal',
    status text NOT NULL DEFAULT 'open',
    opened_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subject, requester)
);

CREATE TABLE comments (
    id serial PRIMARY KEY,
    ticket_id integer NOT NULL REFERENCES tickets (id),
    author text NOT NULL,
    body text NOT NULL
);
