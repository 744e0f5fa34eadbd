-- The service desk: requests on one workflow, their history, linked assets and loan
-- reservations; the asset register and its history; network identities made by account requests.

CREATE TABLE assets (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_number   TEXT NOT NULL UNIQUE,
    category       TEXT NOT NULL,
    brand          TEXT NOT NULL DEFAULT '',
    model          TEXT NOT NULL DEFAULT '',
    serial         TEXT NOT NULL DEFAULT '',
    budget_year    BIGINT,
    price_satang   BIGINT,
    funding_source TEXT NOT NULL DEFAULT '',
    school_id      BIGINT NOT NULL REFERENCES schools (id),
    room           TEXT NOT NULL DEFAULT '',
    custodian      TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL CHECK (state IN ('in_stock', 'in_use', 'on_loan', 'in_repair', 'lost', 'disposed')),
    warranty_end   TEXT,
    notes          TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX assets_school ON assets (school_id, id);
CREATE INDEX assets_state ON assets (state, id);
CREATE INDEX assets_category ON assets (category, id);
CREATE INDEX assets_serial ON assets (serial);

CREATE TABLE asset_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id    BIGINT NOT NULL REFERENCES assets (id),
    at          BIGINT NOT NULL,
    actor_id    BIGINT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    request_id  BIGINT,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX asset_events_asset ON asset_events (asset_id, id);

CREATE TABLE desk_requests (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('repair', 'loan', 'purchase', 'use_of_materials', 'account', 'system_access', 'data_service', 'general')),
    state           TEXT NOT NULL CHECK (state IN ('submitted', 'pending_approval', 'approved', 'rejected', 'assigned', 'in_progress', 'waiting', 'resolved', 'closed', 'cancelled')),
    priority        TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    title           TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    fields_json     TEXT NOT NULL,
    school_id       BIGINT NOT NULL REFERENCES schools (id),
    requester_id    BIGINT NOT NULL REFERENCES users (id),
    assignee_id     BIGINT REFERENCES users (id),
    approvals_done  BIGINT NOT NULL DEFAULT 0,
    wait_reason     TEXT,
    waiting_since   BIGINT,
    paused_ms       BIGINT NOT NULL DEFAULT 0,
    clock_start_at  BIGINT,
    responded_at    BIGINT,
    resolved_at     BIGINT,
    closed_at       BIGINT,
    rating          BIGINT CHECK (rating BETWEEN 1 AND 5),
    rating_comment  TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX desk_requests_state ON desk_requests (state, id);
CREATE INDEX desk_requests_school ON desk_requests (school_id, id);
CREATE INDEX desk_requests_assignee ON desk_requests (assignee_id, id);
CREATE INDEX desk_requests_kind ON desk_requests (kind, id);
CREATE INDEX desk_requests_requester ON desk_requests (requester_id, id);
CREATE INDEX desk_requests_created ON desk_requests (created_at);

CREATE TABLE desk_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  BIGINT NOT NULL REFERENCES desk_requests (id),
    at          BIGINT NOT NULL,
    actor_id    BIGINT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    comment     TEXT,
    detail      TEXT
);
CREATE INDEX desk_events_request ON desk_events (request_id, id);

-- Assets a request is about; for loans the reserved period, which counts against other loans
-- once `approved` is 1.
CREATE TABLE desk_request_assets (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  BIGINT NOT NULL REFERENCES desk_requests (id),
    asset_id    BIGINT NOT NULL REFERENCES assets (id),
    starts_at   BIGINT,
    ends_at     BIGINT,
    approved    BIGINT NOT NULL DEFAULT 0,
    prior_state TEXT,
    UNIQUE (request_id, asset_id),
    CHECK (starts_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX desk_request_assets_asset ON desk_request_assets (asset_id, starts_at);

-- No two approved reservations of one asset overlap, whichever transaction commits first: the
-- exclusion constraint makes a concurrent approval wait for the other and then fail.
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE desk_request_assets ADD CONSTRAINT desk_loan_no_overlap
    EXCLUDE USING gist (asset_id WITH =, int8range(starts_at, ends_at) WITH &&)
    WHERE (approved = 1 AND starts_at IS NOT NULL);

-- Network identities (user IDs) made by approved account requests; the collector attributes
-- authenticated sessions to them.
CREATE TABLE network_identities (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login       TEXT NOT NULL UNIQUE,
    full_name   TEXT NOT NULL,
    school_id   BIGINT NOT NULL REFERENCES schools (id),
    request_id  BIGINT REFERENCES desk_requests (id),
    active      BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL
);
CREATE INDEX network_identities_school ON network_identities (school_id);
