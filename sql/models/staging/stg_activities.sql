-- Typed activities; exact duplicates (same lead, instant and type) are exported twice by
-- some CRMs and would double-count, so they collapse to one row.
--
-- The de-duplication is the costliest step of the features: a hash table as large as the
-- activity table. Keyed on the type's name, DuckDB cannot spill it to disk (150M activities
-- ran out of memory at the profile's 1.5 GB); keyed on a number it can. So the types of
-- var('activity_types') are de-duplicated by number, and only the rows of any other type
-- (rare: a warning test reports them) by name.
{{ deduplicated_activities() }}
