-- Device health, second step: the built-in `system` user that files repair requests for
-- incidents, alert kinds for loss, toner and disk, 5-minute aggregates of samples, and devices
-- agents discover on school networks.

-- khetnet itself, as requester of the repair requests incidents open. It cannot sign in: it is
-- inactive and its password hash is no hash at all.
INSERT INTO users (username, display_name, role, password_hash, active, password_changed_at, created_at, updated_at)
VALUES ('system', 'khetnet (system)', 'technician', '!', 0, 0, 0, 0);

-- SQLite cannot change a CHECK constraint: the table is rebuilt with the new kinds, the value the
-- repair request was last told about (`noted_value`), and the link to the request.
CREATE TABLE device_incidents_next (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('device_down', 'agent_silent', 'loss_high', 'toner_low', 'disk_full')),
    school_id    INTEGER NOT NULL REFERENCES schools (id),
    device_id    INTEGER REFERENCES devices (id) ON DELETE CASCADE,
    agent_id     INTEGER REFERENCES agents (id),
    summary      TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    opened_at    INTEGER NOT NULL,
    resolved_at  INTEGER,
    request_id   INTEGER REFERENCES desk_requests (id),
    noted_value  REAL
);
INSERT INTO device_incidents_next (id, kind, school_id, device_id, agent_id, summary, started_at, opened_at, resolved_at, request_id)
SELECT id, kind, school_id, device_id, agent_id, summary, started_at, opened_at, resolved_at, request_id FROM device_incidents;
DROP TABLE device_incidents;
ALTER TABLE device_incidents_next RENAME TO device_incidents;
-- At most one open incident per device and rule, and per agent.
CREATE UNIQUE INDEX device_incidents_open_device ON device_incidents (device_id, kind) WHERE resolved_at IS NULL AND device_id IS NOT NULL;
CREATE UNIQUE INDEX device_incidents_open_agent ON device_incidents (agent_id) WHERE resolved_at IS NULL AND kind = 'agent_silent';
CREATE INDEX device_incidents_school ON device_incidents (school_id, opened_at);
CREATE INDEX device_incidents_device ON device_incidents (device_id, kind, id);
CREATE INDEX device_incidents_request ON device_incidents (request_id);

-- Five minutes of one device's samples, kept after the raw samples are gone.
CREATE TABLE device_aggregates (
    device_id      INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    bucket_at      INTEGER NOT NULL,
    samples        INTEGER NOT NULL,
    up_samples     INTEGER NOT NULL,
    latency_min_ms REAL,
    latency_avg_ms REAL,
    latency_max_ms REAL,
    loss_avg_percent REAL,
    loss_max_percent REAL,
    in_bps         REAL,
    out_bps        REAL,
    PRIMARY KEY (device_id, bucket_at)
);
CREATE INDEX device_aggregates_at ON device_aggregates (bucket_at);
CREATE INDEX device_samples_at ON device_samples (at);

-- Devices an agent saw on its school's network, by MAC address.
CREATE TABLE discovered_devices (
    id             INTEGER PRIMARY KEY,
    school_id      INTEGER NOT NULL REFERENCES schools (id),
    mac            TEXT NOT NULL,
    ip             TEXT NOT NULL,
    vendor         TEXT,
    first_seen_at  INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL,
    agent_id       INTEGER REFERENCES agents (id),
    state          TEXT NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'accepted', 'ignored')),
    device_id      INTEGER REFERENCES devices (id) ON DELETE SET NULL,
    asset_id       INTEGER REFERENCES assets (id),
    decided_by     INTEGER REFERENCES users (id),
    decided_at     INTEGER,
    UNIQUE (school_id, mac)
);
CREATE INDEX discovered_devices_state ON discovered_devices (school_id, state, last_seen_at);
