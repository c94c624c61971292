-- The case register (one row per case, its current stage) and the append-only audit trail.
-- Written only by activities, idempotently: every audit row carries a unique idempotency key
-- (workflow id + step), and the register row only moves forward (last_seq).

CREATE TABLE cases (
    case_id              text PRIMARY KEY,
    workflow_id          text NOT NULL UNIQUE,
    subject_kind         text NOT NULL,
    subject_name         text NOT NULL,
    subject_identifiers  jsonb NOT NULL DEFAULT '{}'::jsonb,
    violation_category   text NOT NULL,
    legal_basis          text NOT NULL,
    severity             text NOT NULL,
    office               text NOT NULL,
    opened_by            text NOT NULL,
    stage                text NOT NULL,
    outcome              text,
    deadline_at          timestamptz,
    opened_at            timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    closed_at            timestamptz,
    last_seq             integer NOT NULL,
    CONSTRAINT cases_closed_has_outcome CHECK ((closed_at IS NULL) = (outcome IS NULL))
);

CREATE INDEX cases_office_stage_idx ON cases (office, stage);
CREATE INDEX cases_open_deadline_idx ON cases (deadline_at) WHERE closed_at IS NULL;
CREATE INDEX cases_opened_at_idx ON cases (opened_at);

CREATE TABLE case_audit (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    case_id          text NOT NULL REFERENCES cases (case_id),
    workflow_id      text NOT NULL,
    seq              integer NOT NULL,
    action           text NOT NULL,
    from_stage       text,
    to_stage         text NOT NULL,
    actor            text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT case_audit_case_seq_key UNIQUE (case_id, seq)
);

-- The audit trail is evidence: rows are added, never changed or removed.
CREATE FUNCTION case_audit_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'case_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER case_audit_append_only
    BEFORE UPDATE OR DELETE ON case_audit
    FOR EACH ROW EXECUTE FUNCTION case_audit_is_append_only();

CREATE TRIGGER case_audit_no_truncate
    BEFORE TRUNCATE ON case_audit
    FOR EACH STATEMENT EXECUTE FUNCTION case_audit_is_append_only();
