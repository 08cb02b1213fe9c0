-- The rejects mirror: with [feedback] mirror_table = "frontdb_reject", the agent keeps here,
-- in the front-end database, every row it could not deliver or the province rejected, so the
-- business system can show staff what to correct. The agent writes; nothing else needs to.
CREATE TABLE frontdb_reject (
    id           bigint PRIMARY KEY,      -- the reject's number (frontdb-agent rejects show ID)
    table_name   varchar(128) NOT NULL, -- the table's name in agent.toml
    record_key   varchar(500) NOT NULL, -- key values joined by |
    state        varchar(16) NOT NULL,  -- open | resubmitted | cleared
    origin       varchar(16) NOT NULL,  -- rule | map | read | target | province
    reasons      text NOT NULL,         -- every reason, separated by "; "
    first_seen   timestamptz,
    last_seen    timestamptz,
    resubmitted  timestamptz,
    cleared      timestamptz
);
