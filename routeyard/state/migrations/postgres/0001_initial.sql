-- The first PostgreSQL schema: the decision log and the key-value space, as in SQLite.
-- Applied by routeyard/state/pg_schema.py inside one transaction; never edit a released file,
-- add the next number instead.

-- One row per routed request; docs/state.md describes each field.
CREATE TABLE decisions (
    request_id        text PRIMARY KEY,
    time              double precision NOT NULL,  -- unix seconds when the request arrived
    decision          text,
    model             text,
    endpoint          text,
    latency_ms        double precision NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cost_usd          double precision NOT NULL,
    status            text NOT NULL,
    stream            boolean NOT NULL,
    detail            jsonb
);
CREATE INDEX decisions_time ON decisions (time);

-- Keys and tenants, spend, feedback markers, stored responses, learned state: every value
-- the rest of Routeyard keeps through Store.get_value/set_value/claim. Byte-order collation
-- ("C") so key order and prefix ranges match SQLite's and Redis's whatever the database's
-- locale is. expires_at is wall-clock unix seconds, so expiry holds across restarts.
CREATE TABLE kv (
    key        text COLLATE "C" PRIMARY KEY,
    value      bytea NOT NULL,
    expires_at double precision
);
CREATE INDEX kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL;
