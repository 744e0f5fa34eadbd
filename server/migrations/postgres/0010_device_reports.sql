-- Raw samples are kept as one row per stored report (its samples encoded together, see
-- server/src/devices/raw.rs) instead of one indexed row per sample: an agent report costs one
-- row write, not fifty index entries spread over the devices' leaves.
CREATE TABLE device_reports (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id   BIGINT NOT NULL REFERENCES schools (id),
    agent_id    BIGINT NOT NULL REFERENCES agents (id),
    received_at BIGINT NOT NULL,
    first_at    BIGINT NOT NULL,
    last_at     BIGINT NOT NULL,
    samples     BIGINT NOT NULL,
    sample_data BYTEA NOT NULL,
    day_counts  BYTEA NOT NULL
);
CREATE INDEX device_reports_school_last ON device_reports (school_id, last_at);
CREATE INDEX device_reports_first ON device_reports (first_at);

-- The first report id that may hold a device's samples (PostgreSQL never reuses ids; SQLite
-- may, and both engines keep the same rule).
ALTER TABLE devices ADD COLUMN reports_from BIGINT NOT NULL DEFAULT 0;
