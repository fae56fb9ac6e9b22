-- Energy (docs/routing.md, "Energy"): each record's estimated joules, NULL when the serving
-- model has no energy figures (and for every record kept before this version).
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS energy_j double precision;
