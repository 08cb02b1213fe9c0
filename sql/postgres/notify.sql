-- Wake frontdb-agent as soon as rows change (PostgreSQL front-end databases).
-- With `notify = "frontdb_supervision_action"` on the table in agent.toml, the agent LISTENs
-- on that channel and runs the table at once, between its scheduled (realtime) polls.
-- One notification per statement, not per row; the payload is ignored.

CREATE OR REPLACE FUNCTION frontdb_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER up_supervision_action_frontdb_notify
    AFTER INSERT OR UPDATE OR DELETE ON up_supervision_action
    FOR EACH STATEMENT EXECUTE FUNCTION frontdb_notify('frontdb_supervision_action');
