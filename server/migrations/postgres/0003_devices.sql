-- Device health: school agents and their enrollment, monitored devices (the targets agents
-- probe), report batches (deduplication), samples, and incidents.

CREATE TABLE agent_enrollment_tokens (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id   BIGINT NOT NULL REFERENCES schools (id),
    token_hash  TEXT NOT NULL UNIQUE,
    note        TEXT NOT NULL DEFAULT '',
    created_by  BIGINT REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    agent_id    BIGINT
);

CREATE TABLE agents (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id        BIGINT NOT NULL REFERENCES schools (id),
    name             TEXT NOT NULL,
    credential_hash  TEXT NOT NULL UNIQUE,
    version          TEXT NOT NULL DEFAULT '',
    enrolled_at      BIGINT NOT NULL,
    revoked_at       BIGINT,
    last_seen_at     BIGINT,
    last_address     TEXT,
    samples_received BIGINT NOT NULL DEFAULT 0,
    samples_lost     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX agents_school ON agents (school_id);

CREATE TABLE devices (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id             BIGINT NOT NULL REFERENCES schools (id),
    name                  TEXT NOT NULL,
    probe                 TEXT NOT NULL CHECK (probe IN ('icmp', 'tcp', 'http', 'snmp')),
    address               TEXT NOT NULL,
    port                  BIGINT,
    snmp_community        TEXT,
    interval_secs         BIGINT NOT NULL,
    down_after_minutes    BIGINT NOT NULL,
    degraded_loss_percent BIGINT NOT NULL,
    enabled               BIGINT NOT NULL DEFAULT 1,
    status                TEXT NOT NULL DEFAULT 'unknown' CHECK (status IN ('unknown', 'up', 'degraded', 'down')),
    status_since          BIGINT,
    last_sample_at        BIGINT,
    last_latency_ms       DOUBLE PRECISION,
    last_loss_percent     DOUBLE PRECISION,
    last_error            TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (school_id, name)
);
CREATE INDEX devices_school ON devices (school_id);

-- One row per batch an agent delivered: a replayed batch id is recognised and not stored again.
CREATE TABLE agent_report_batches (
    agent_id     BIGINT NOT NULL REFERENCES agents (id),
    batch_id     TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    samples      BIGINT NOT NULL,
    samples_lost BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, batch_id)
);

CREATE TABLE device_samples (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id    BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    agent_id     BIGINT NOT NULL REFERENCES agents (id),
    at           BIGINT NOT NULL,
    ok           BIGINT NOT NULL,
    latency_ms   DOUBLE PRECISION,
    loss_percent DOUBLE PRECISION,
    error        TEXT,
    detail_json  TEXT
);
CREATE INDEX device_samples_device_at ON device_samples (device_id, at);

-- An incident: a device down longer than its rule allows, or an agent silent. At most one open
-- incident per device and per agent (the partial unique indexes).
CREATE TABLE device_incidents (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('device_down', 'agent_silent')),
    school_id    BIGINT NOT NULL REFERENCES schools (id),
    device_id    BIGINT REFERENCES devices (id) ON DELETE CASCADE,
    agent_id     BIGINT REFERENCES agents (id),
    summary      TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    opened_at    BIGINT NOT NULL,
    resolved_at  BIGINT,
    request_id   BIGINT
);
CREATE UNIQUE INDEX device_incidents_open_device ON device_incidents (device_id) WHERE resolved_at IS NULL AND kind = 'device_down';
CREATE UNIQUE INDEX device_incidents_open_agent ON device_incidents (agent_id) WHERE resolved_at IS NULL AND kind = 'agent_silent';
CREATE INDEX device_incidents_school ON device_incidents (school_id, opened_at);
