-- Raw samples are kept as one row per stored report (its samples encoded together, see
-- server/src/devices/raw.rs) instead of one indexed row per sample: an agent report costs one
-- row write, not fifty index entries spread over the devices' leaves.
-- AUTOINCREMENT: a row's id never comes back after rows are rolled up and deleted, so that a
-- device's `reports_from` (the first report id that may hold its samples) stays true when
-- SQLite reuses a deleted device's id for a new one.
CREATE TABLE device_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    school_id   INTEGER NOT NULL REFERENCES schools (id),
    agent_id    INTEGER NOT NULL REFERENCES agents (id),
    received_at INTEGER NOT NULL,
    first_at    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    samples     INTEGER NOT NULL,
    sample_data BLOB NOT NULL,
    day_counts  BLOB NOT NULL
);
CREATE INDEX device_reports_school_last ON device_reports (school_id, last_at);
CREATE INDEX device_reports_first ON device_reports (first_at);

ALTER TABLE devices ADD COLUMN reports_from INTEGER NOT NULL DEFAULT 0;
