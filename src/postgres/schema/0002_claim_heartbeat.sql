-- Schema version 2 of the PostgreSQL backend (docs/high-availability.md).

-- A `trigger`'s claim carries a heartbeat, written by the trigger while it waits (the
-- database's clock, `now()`), and the lease_ttl the trigger runs with (it beats every
-- third of it): the leader adopts a trigger's claim whose heartbeat is older than that,
-- as it adopts a claim handed over. NULL for claims held by the leader, whose lease is
-- their heartbeat.
ALTER TABLE run_claims ADD COLUMN heartbeat_at timestamptz;
ALTER TABLE run_claims ADD COLUMN heartbeat_ttl interval;

-- When the claim went `posting` (the database's clock): a claim adopted in `posting` has
-- no snapshot, so the run is looked up on Jellyfin, a run begun since then being ours.
ALTER TABLE run_claims ADD COLUMN posted_at timestamptz;
