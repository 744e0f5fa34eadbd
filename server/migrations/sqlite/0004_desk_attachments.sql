-- Files attached to requests. The bytes live under the data directory, named by their SHA-256
-- (`attachments/ab/abcdef...`); this row says which request carries which file, under what
-- display name, of what type (found from the content), and who attached it. Rows are never
-- deleted: a request's record is kept whole.

CREATE TABLE desk_attachments (
    id            INTEGER PRIMARY KEY,
    request_id    INTEGER NOT NULL REFERENCES desk_requests (id),
    sha256        TEXT NOT NULL CHECK (length(sha256) = 64),
    size          INTEGER NOT NULL CHECK (size > 0),
    content_type  TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    uploaded_by   INTEGER REFERENCES users (id),
    uploader      TEXT NOT NULL,
    uploaded_at   INTEGER NOT NULL
);
CREATE INDEX desk_attachments_request ON desk_attachments (request_id, id);
