-- Schema version 1 of the PostgreSQL backend (docs/high-availability.md).

-- One lease for the fleet: its holder leads. The epoch grows by one at every change of
-- holder and fences every write a claim's owner makes.
CREATE TABLE scheduler_lease (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    epoch       bigint NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- One row per (server, due instant) or (server, manual:<run_id>), inserted before the
-- start request: the unique key, not leadership, makes "at most one start" true.
CREATE TABLE run_claims (
    server      text NOT NULL,
    claim_key   text NOT NULL,
    run_id      text NOT NULL UNIQUE,
    epoch       bigint NOT NULL,
    holder      text NOT NULL,
    state       text NOT NULL
                CHECK (state IN ('claimed', 'posting', 'started', 'done')),
    snapshot    jsonb,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server, claim_key)
);

-- At most one active run per server, as the per-server lock file gives with files.
CREATE UNIQUE INDEX run_claims_one_active ON run_claims (server)
    WHERE state IN ('claimed', 'posting', 'started');

-- The records, as history JSON Lines hold them; written in the statement that marks the
-- claim done. Imported records (`history import`) have no claim. `json`, not `jsonb`: it
-- keeps the text as written, so `history --format json` prints what files would.
-- Ordered by when the run was asked for (every record has it; a run that never started has
-- no start time).
CREATE TABLE run_history (
    run_id        text PRIMARY KEY,
    server        text NOT NULL,
    triggered_at  timestamptz NOT NULL,
    record        json NOT NULL
);
CREATE INDEX run_history_by_server ON run_history (server, triggered_at DESC);
