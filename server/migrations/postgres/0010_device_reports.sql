-- Raw samples are kept as one row per stored report (its samples encoded together, see
-- server/src/devices/raw.rs) instead of one indexed row per sample: an agent report costs one
-- row write, not fifty index entries spread over the devices' leaves.
CREATE TABLE device_reports (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id   BIGINT NOT NULL,
    agent_id    BIGINT NOT NULL,
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

-- Reports and batch ids are written only by the report writer, for the agent that sent them
-- (agents are revoked, never deleted). A foreign key here made every report take a share
-- lock on its agent's and school's rows, which PostgreSQL records in those rows: at thousands
-- of reports a second, a write to the same few rows each time.
ALTER TABLE agent_report_batches DROP CONSTRAINT agent_report_batches_agent_id_fkey;
