-- Device health, second step: the built-in `system` user that files repair requests for
-- incidents, alert kinds for loss, toner and disk, 5-minute aggregates of samples, and devices
-- agents discover on school networks.

-- khetnet itself, as requester of the repair requests incidents open. It cannot sign in: it is
-- inactive and its password hash is no hash at all.
INSERT INTO users (username, display_name, role, password_hash, active, password_changed_at, created_at, updated_at)
VALUES ('system', 'khetnet (system)', 'technician', '!', 0, 0, 0, 0);

-- New alert kinds, the value the repair request was last told about (`noted_value`), and the
-- link to the request.
ALTER TABLE device_incidents DROP CONSTRAINT device_incidents_kind_check;
ALTER TABLE device_incidents ADD CONSTRAINT device_incidents_kind_check
    CHECK (kind IN ('device_down', 'agent_silent', 'loss_high', 'toner_low', 'disk_full'));
ALTER TABLE device_incidents ADD COLUMN noted_value DOUBLE PRECISION;
ALTER TABLE device_incidents ADD CONSTRAINT device_incidents_request_fkey
    FOREIGN KEY (request_id) REFERENCES desk_requests (id);
-- At most one open incident per device and rule, and per agent.
DROP INDEX device_incidents_open_device;
CREATE UNIQUE INDEX device_incidents_open_device ON device_incidents (device_id, kind) WHERE resolved_at IS NULL AND device_id IS NOT NULL;
CREATE INDEX device_incidents_device ON device_incidents (device_id, kind, id);
CREATE INDEX device_incidents_request ON device_incidents (request_id);

-- Five minutes of one device's samples, kept after the raw samples are gone.
CREATE TABLE device_aggregates (
    device_id      BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    bucket_at      BIGINT NOT NULL,
    samples        BIGINT NOT NULL,
    up_samples     BIGINT NOT NULL,
    latency_min_ms DOUBLE PRECISION,
    latency_avg_ms DOUBLE PRECISION,
    latency_max_ms DOUBLE PRECISION,
    loss_avg_percent DOUBLE PRECISION,
    loss_max_percent DOUBLE PRECISION,
    in_bps         DOUBLE PRECISION,
    out_bps        DOUBLE PRECISION,
    PRIMARY KEY (device_id, bucket_at)
);
CREATE INDEX device_aggregates_at ON device_aggregates (bucket_at);
CREATE INDEX device_samples_at ON device_samples (at);

-- Devices an agent saw on its school's network, by MAC address.
CREATE TABLE discovered_devices (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id      BIGINT NOT NULL REFERENCES schools (id),
    mac            TEXT NOT NULL,
    ip             TEXT NOT NULL,
    vendor         TEXT,
    first_seen_at  BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    agent_id       BIGINT REFERENCES agents (id),
    state          TEXT NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'accepted', 'ignored')),
    device_id      BIGINT REFERENCES devices (id) ON DELETE SET NULL,
    asset_id       BIGINT REFERENCES assets (id),
    decided_by     BIGINT REFERENCES users (id),
    decided_at     BIGINT,
    UNIQUE (school_id, mac)
);
CREATE INDEX discovered_devices_state ON discovered_devices (school_id, state, last_seen_at);
