-- Clinic-agent releases and the agents that run them (docs/design.md §3.14, decision 0018).
--
-- A release is one version of the agent for one target: the manifest's exact signed bytes, its
-- minisign signature, and the binary itself, which lives here and not in the data directory so
-- that every gateway instance on the shared database serves it (its size is bounded by
-- agent_releases.max_binary_bytes). A version is published once per target and never replaced;
-- withdrawing hides it from agents but keeps the row, so the version cannot be published again
-- with other bytes.
CREATE TABLE agent_releases (
    version       TEXT NOT NULL,
    target        TEXT NOT NULL,
    -- The version's numbers, for ordering (the text does not sort: 1.10.0 > 1.9.0).
    major         BIGINT NOT NULL,
    minor         BIGINT NOT NULL,
    patch         BIGINT NOT NULL,
    manifest      BLOB NOT NULL,
    signature     TEXT NOT NULL,
    -- The release key that signed it (minisign key id, 16 hex digits).
    key_id        TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    size          BIGINT NOT NULL,
    content       BLOB NOT NULL,
    withdrawn_at  BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (version, target)
);
CREATE INDEX agent_releases_newest ON agent_releases (target, major, minor, patch) WHERE withdrawn_at IS NULL;

-- Every clinic agent seen (by its id, per clinic): the version it reported on its last call and
-- the last step of an update it reported. last_seen is refreshed at most once a minute.
CREATE TABLE agents (
    clinic_id       TEXT NOT NULL REFERENCES clinics(id),
    agent_id        TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    version         TEXT NOT NULL,
    last_seen       BIGINT NOT NULL,
    update_step     TEXT,
    update_version  TEXT,
    update_outcome  TEXT,
    update_detail   TEXT,
    update_at       BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (clinic_id, agent_id)
);
