-- Alerts: what went wrong that no retry can fix, on record for operators and supervisors.
-- A step the database refused as data (issue 9) raises one; written idempotently (the activity
-- may be retried by a worker that crashed after writing it), never updated, never deleted.
-- No foreign key to cases: the step refused may be the opening, before the case has its row.
CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    case_id          text NOT NULL,
    kind             text NOT NULL,
    detail           jsonb NOT NULL DEFAULT '{}'::jsonb,
    raised_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX alerts_case_idx ON alerts (case_id, id);

CREATE FUNCTION alerts_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alerts are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER alerts_append_only
    BEFORE UPDATE OR DELETE ON alerts
    FOR EACH ROW EXECUTE FUNCTION alerts_are_append_only();
