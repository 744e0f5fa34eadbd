-- Device health: school agents and their enrollment, monitored devices (the targets agents
-- probe), report batches (deduplication), samples, and incidents.

CREATE TABLE agent_enrollment_tokens (
    id          INTEGER PRIMARY KEY,
    school_id   INTEGER NOT NULL REFERENCES schools (id),
    token_hash  TEXT NOT NULL UNIQUE,
    note        TEXT NOT NULL DEFAULT '',
    created_by  INTEGER REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    agent_id    INTEGER
);

CREATE TABLE agents (
    id               INTEGER PRIMARY KEY,
    school_id        INTEGER NOT NULL REFERENCES schools (id),
    name             TEXT NOT NULL,
    credential_hash  TEXT NOT NULL UNIQUE,
    version          TEXT NOT NULL DEFAULT '',
    enrolled_at      INTEGER NOT NULL,
    revoked_at       INTEGER,
    last_seen_at     INTEGER,
    last_address     TEXT,
    samples_received INTEGER NOT NULL DEFAULT 0,
    samples_lost     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX agents_school ON agents (school_id);

CREATE TABLE devices (
    id                    INTEGER PRIMARY KEY,
    school_id             INTEGER NOT NULL REFERENCES schools (id),
    name                  TEXT NOT NULL,
    probe                 TEXT NOT NULL CHECK (probe IN ('icmp', 'tcp', 'http', 'snmp')),
    address               TEXT NOT NULL,
    port                  INTEGER,
    snmp_community        TEXT,
    interval_secs         INTEGER NOT NULL,
    down_after_minutes    INTEGER NOT NULL,
    degraded_loss_percent INTEGER NOT NULL,
    enabled               INTEGER NOT NULL DEFAULT 1,
    status                TEXT NOT NULL DEFAULT 'unknown' CHECK (status IN ('unknown', 'up', 'degraded', 'down')),
    status_since          INTEGER,
    last_sample_at        INTEGER,
    last_latency_ms       REAL,
    last_loss_percent     REAL,
    last_error            TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    UNIQUE (school_id, name)
);
CREATE INDEX devices_school ON devices (school_id);

-- One row per batch an agent delivered: a replayed batch id is recognised and not stored again.
CREATE TABLE agent_report_batches (
    agent_id     INTEGER NOT NULL REFERENCES agents (id),
    batch_id     TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    samples      INTEGER NOT NULL,
    samples_lost INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, batch_id)
);

CREATE TABLE device_samples (
    id           INTEGER PRIMARY KEY,
    device_id    INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    agent_id     INTEGER NOT NULL REFERENCES agents (id),
    at           INTEGER NOT NULL,
    ok           INTEGER NOT NULL,
    latency_ms   REAL,
    loss_percent REAL,
    error        TEXT,
    detail_json  TEXT
);
CREATE INDEX device_samples_device_at ON device_samples (device_id, at);

-- An incident: a device down longer than its rule allows, or an agent silent. At most one open
-- incident per device and per agent (the partial unique indexes).
CREATE TABLE device_incidents (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('device_down', 'agent_silent')),
    school_id    INTEGER NOT NULL REFERENCES schools (id),
    device_id    INTEGER REFERENCES devices (id) ON DELETE CASCADE,
    agent_id     INTEGER REFERENCES agents (id),
    summary      TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    opened_at    INTEGER NOT NULL,
    resolved_at  INTEGER,
    request_id   INTEGER
);
CREATE UNIQUE INDEX device_incidents_open_device ON device_incidents (device_id) WHERE resolved_at IS NULL AND kind = 'device_down';
CREATE UNIQUE INDEX device_incidents_open_agent ON device_incidents (agent_id) WHERE resolved_at IS NULL AND kind = 'agent_silent';
CREATE INDEX device_incidents_school ON device_incidents (school_id, opened_at);
