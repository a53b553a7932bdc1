-- authtrail: the default audit table of the `postgres` emitter (one row per event).
-- Apply with `psql -v ON_ERROR_STOP=1 -f 001_authtrail_events.sql`, or let the emitter run it at
-- cold start with `createSchema: true`. Safe to run again (IF NOT EXISTS everywhere).
CREATE TABLE IF NOT EXISTS authtrail_events (
    event_id        text PRIMARY KEY,
    kind            text NOT NULL,
    type            text,
    time            timestamptz,
    realm           text,
    client          text,
    user_id         text,
    session_id      text,
    ip              text,
    resource_type   text,
    resource_path   text,
    error           text,
    event           jsonb NOT NULL,
    stream          text,
    shard           text,
    sequence_number text
);
CREATE INDEX IF NOT EXISTS authtrail_events_time_idx ON authtrail_events (time);
CREATE INDEX IF NOT EXISTS authtrail_events_user_id_idx ON authtrail_events (user_id);
CREATE INDEX IF NOT EXISTS authtrail_events_type_idx ON authtrail_events (type);
