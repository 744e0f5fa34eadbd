-- The service desk: requests on one workflow, their history, linked assets and loan
-- reservations; the asset register and its history; network identities made by account requests.

CREATE TABLE assets (
    id             INTEGER PRIMARY KEY,
    asset_number   TEXT NOT NULL UNIQUE,
    category       TEXT NOT NULL,
    brand          TEXT NOT NULL DEFAULT '',
    model          TEXT NOT NULL DEFAULT '',
    serial         TEXT NOT NULL DEFAULT '',
    budget_year    INTEGER,
    price_satang   INTEGER,
    funding_source TEXT NOT NULL DEFAULT '',
    school_id      INTEGER NOT NULL REFERENCES schools (id),
    room           TEXT NOT NULL DEFAULT '',
    custodian      TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL CHECK (state IN ('in_stock', 'in_use', 'on_loan', 'in_repair', 'lost', 'disposed')),
    warranty_end   TEXT,
    notes          TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX assets_school ON assets (school_id, id);
CREATE INDEX assets_state ON assets (state, id);
CREATE INDEX assets_category ON assets (category, id);
CREATE INDEX assets_serial ON assets (serial);

CREATE TABLE asset_events (
    id          INTEGER PRIMARY KEY,
    asset_id    INTEGER NOT NULL REFERENCES assets (id),
    at          INTEGER NOT NULL,
    actor_id    INTEGER,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    request_id  INTEGER,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX asset_events_asset ON asset_events (asset_id, id);

CREATE TABLE desk_requests (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('repair', 'loan', 'purchase', 'use_of_materials', 'account', 'system_access', 'data_service', 'general')),
    state           TEXT NOT NULL CHECK (state IN ('submitted', 'pending_approval', 'approved', 'rejected', 'assigned', 'in_progress', 'waiting', 'resolved', 'closed', 'cancelled')),
    priority        TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    title           TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    fields_json     TEXT NOT NULL,
    school_id       INTEGER NOT NULL REFERENCES schools (id),
    requester_id    INTEGER NOT NULL REFERENCES users (id),
    assignee_id     INTEGER REFERENCES users (id),
    approvals_done  INTEGER NOT NULL DEFAULT 0,
    wait_reason     TEXT,
    waiting_since   INTEGER,
    paused_ms       INTEGER NOT NULL DEFAULT 0,
    clock_start_at  INTEGER,
    responded_at    INTEGER,
    resolved_at     INTEGER,
    closed_at       INTEGER,
    rating          INTEGER CHECK (rating BETWEEN 1 AND 5),
    rating_comment  TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX desk_requests_state ON desk_requests (state, id);
CREATE INDEX desk_requests_school ON desk_requests (school_id, id);
CREATE INDEX desk_requests_assignee ON desk_requests (assignee_id, id);
CREATE INDEX desk_requests_kind ON desk_requests (kind, id);
CREATE INDEX desk_requests_requester ON desk_requests (requester_id, id);
CREATE INDEX desk_requests_created ON desk_requests (created_at);

CREATE TABLE desk_events (
    id          INTEGER PRIMARY KEY,
    request_id  INTEGER NOT NULL REFERENCES desk_requests (id),
    at          INTEGER NOT NULL,
    actor_id    INTEGER,
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
    id          INTEGER PRIMARY KEY,
    request_id  INTEGER NOT NULL REFERENCES desk_requests (id),
    asset_id    INTEGER NOT NULL REFERENCES assets (id),
    starts_at   INTEGER,
    ends_at     INTEGER,
    approved    INTEGER NOT NULL DEFAULT 0,
    prior_state TEXT,
    UNIQUE (request_id, asset_id),
    CHECK (starts_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX desk_request_assets_asset ON desk_request_assets (asset_id, starts_at);

-- No two approved reservations of one asset overlap. SQLite runs one writer at a time, so the
-- check and the write cannot interleave with another approval.
CREATE TRIGGER desk_loan_no_overlap_insert BEFORE INSERT ON desk_request_assets
WHEN NEW.approved = 1 AND NEW.starts_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'desk_loan_overlap')
    WHERE EXISTS (SELECT 1 FROM desk_request_assets o
                  WHERE o.asset_id = NEW.asset_id AND o.approved = 1 AND o.starts_at IS NOT NULL
                    AND o.starts_at < NEW.ends_at AND NEW.starts_at < o.ends_at);
END;
CREATE TRIGGER desk_loan_no_overlap_update BEFORE UPDATE ON desk_request_assets
WHEN NEW.approved = 1 AND NEW.starts_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'desk_loan_overlap')
    WHERE EXISTS (SELECT 1 FROM desk_request_assets o
                  WHERE o.id <> NEW.id AND o.asset_id = NEW.asset_id AND o.approved = 1 AND o.starts_at IS NOT NULL
                    AND o.starts_at < NEW.ends_at AND NEW.starts_at < o.ends_at);
END;

-- Network identities (user IDs) made by approved account requests; the collector attributes
-- authenticated sessions to them.
CREATE TABLE network_identities (
    id          INTEGER PRIMARY KEY,
    login       TEXT NOT NULL UNIQUE,
    full_name   TEXT NOT NULL,
    school_id   INTEGER NOT NULL REFERENCES schools (id),
    request_id  INTEGER REFERENCES desk_requests (id),
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL
);
CREATE INDEX network_identities_school ON network_identities (school_id);
