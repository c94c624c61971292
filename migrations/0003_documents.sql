-- Enforcement documents of a case (interview notice, rectification order, prior notice, decision
-- letter...), each numbered in its series: one series per (office, year, kind), 1, 2, 3... with
-- no gaps. A gap in decision letters looks like a suppressed decision, so a number is taken in the
-- same transaction as the document's insert: the series row stays locked until commit, and a
-- transaction that fails gives its number back. Written only by the issue_document activity,
-- idempotently (workflow id + step).

CREATE TABLE document_series (
    office         text NOT NULL,
    year           integer NOT NULL,
    kind           text NOT NULL,
    last_sequence  integer NOT NULL CHECK (last_sequence >= 1),
    PRIMARY KEY (office, year, kind)
);

-- The counter only moves forward, one at a time: it starts at 1, and nothing rewinds or removes it.
CREATE FUNCTION document_series_counts_by_one() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.last_sequence = 1 THEN
        RETURN NEW;
    ELSIF TG_OP = 'UPDATE' AND (NEW.office, NEW.year, NEW.kind) = (OLD.office, OLD.year, OLD.kind)
          AND NEW.last_sequence = OLD.last_sequence + 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'document series only count up by one: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER document_series_forward_only
    BEFORE INSERT OR UPDATE OR DELETE ON document_series
    FOR EACH ROW EXECUTE FUNCTION document_series_counts_by_one();

CREATE TRIGGER document_series_no_truncate
    BEFORE TRUNCATE ON document_series
    FOR EACH STATEMENT EXECUTE FUNCTION document_series_counts_by_one();

CREATE TABLE documents (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    case_id          text NOT NULL REFERENCES cases (case_id),
    workflow_id      text NOT NULL,
    step             text NOT NULL,
    kind             text NOT NULL,
    office           text NOT NULL,
    year             integer NOT NULL,
    sequence         integer NOT NULL CHECK (sequence >= 1),
    number           text NOT NULL UNIQUE,
    title            text NOT NULL,
    content          jsonb NOT NULL DEFAULT '{}'::jsonb,
    actor            text NOT NULL,
    issued_at        timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT documents_series_sequence_key UNIQUE (office, year, kind, sequence),
    CONSTRAINT documents_series_fkey
        FOREIGN KEY (office, year, kind) REFERENCES document_series (office, year, kind),
    -- The series year is the calendar year in China (UTC+8), not the UTC year.
    CONSTRAINT documents_year_is_shanghai_year
        CHECK (year = extract(year FROM issued_at AT TIME ZONE 'Asia/Shanghai'))
);

CREATE INDEX documents_case_issued_idx ON documents (case_id, issued_at, id);

-- A document can only take the number its series just handed out, in this transaction: nobody
-- inserts a document with a made-up sequence, and the series counter always equals the highest
-- number issued.
CREATE FUNCTION documents_take_series_number() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    current_sequence integer;
BEGIN
    SELECT last_sequence INTO current_sequence
      FROM document_series
     WHERE office = NEW.office AND year = NEW.year AND kind = NEW.kind;
    IF current_sequence IS DISTINCT FROM NEW.sequence THEN
        RAISE EXCEPTION 'document % takes sequence % but its series is at %',
            NEW.number, NEW.sequence, current_sequence
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER documents_sequence_from_series
    BEFORE INSERT ON documents
    FOR EACH ROW EXECUTE FUNCTION documents_take_series_number();

-- Documents are records: rows are added, never changed or removed.
CREATE FUNCTION documents_are_records() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'documents are records: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER documents_immutable
    BEFORE UPDATE OR DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION documents_are_records();

CREATE TRIGGER documents_no_truncate
    BEFORE TRUNCATE ON documents
    FOR EACH STATEMENT EXECUTE FUNCTION documents_are_records();
