-- Schema v2: the decision log's query API (/v1/decisions, /v1/stats). The fields it filters
-- and aggregates on become columns (the rest stays in `detail`), feedback is kept beside the
-- records (joined by request id, so feedback may arrive before its record is flushed), and
-- indexes serve the filters and the stable (time, request_id) order.
ALTER TABLE decisions
    ADD COLUMN surface text,
    ADD COLUMN key_id text,
    ADD COLUMN tenant text,
    ADD COLUMN ttft_ms double precision,
    ADD COLUMN cache text,
    ADD COLUMN dearest_cost_usd double precision;

CREATE INDEX decisions_time_id ON decisions (time, request_id);
CREATE INDEX decisions_key ON decisions (key_id, time);
CREATE INDEX decisions_tenant ON decisions (tenant, time);
CREATE INDEX decisions_model ON decisions (model, time);
CREATE INDEX decisions_decision ON decisions (decision, time);

CREATE TABLE decision_feedback (
    request_id text PRIMARY KEY,
    score      double precision NOT NULL,  -- the reward in [0, 1]
    time       double precision NOT NULL   -- unix seconds when it arrived
);
CREATE INDEX decision_feedback_time ON decision_feedback (time);
