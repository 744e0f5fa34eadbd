-- Search and paging at a district's scale (a million assets, a million requests).
--
-- The words of an asset (its asset number, serial, brand, model and room, lower-cased and split
-- as `desk::assets::words` does) are kept twice: space-separated in `assets.words` (each word
-- preceded by a space, so `words LIKE '% term%'` finds a word that starts with the term), and
-- one row per word in `asset_words`, whose key answers "which assets have a word starting with
-- the term" from an index. `words` is NULL until the server has indexed the asset: the server
-- fills in assets registered before this migration when it starts.
ALTER TABLE assets ADD COLUMN words TEXT;
CREATE INDEX assets_words_pending ON assets (id) WHERE words IS NULL;

CREATE TABLE asset_words (
    word      TEXT NOT NULL,
    asset_id  INTEGER NOT NULL REFERENCES assets (id),
    PRIMARY KEY (word, asset_id)
) WITHOUT ROWID;

-- The filters people combine: a school's assets in one state, a school's open requests, a
-- technician's own queue in one state. Each keeps the newest-first order (`id`) in the key, so
-- a page is read straight from the index.
CREATE INDEX assets_school_state ON assets (school_id, state, id);
CREATE INDEX desk_requests_school_state ON desk_requests (school_id, state, id);
CREATE INDEX desk_requests_assignee_state ON desk_requests (assignee_id, state, id);
