-- An asset is also found by its category ("projector", "notebook"): the words the server keeps
-- for search now include it. The words are written again for every asset: the server indexes
-- assets whose `words` is NULL when it starts (see 0005).
DELETE FROM asset_words;
UPDATE assets SET words = NULL;
