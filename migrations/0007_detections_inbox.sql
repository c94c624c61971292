-- The detections inbox, and what an operator needs to carry on a case whose run ended badly.
--
-- Monitoring systems detect one platform thousands of times. Each detection is one row here,
-- written by the API in one idempotent statement (api/intake.py): the idempotency key is unique
-- across the system, and its body's hash tells a repeat (`duplicate`) from a reuse of the key
-- for something else (409). A detection belongs to the case of its office, violation category
-- and subject (the route): the first for a route opens case `generation` 1, later ones join the
-- open case, and one after that case closed opens the next generation. Exactly one detection
-- opens each case (the partial unique index), however many arrive at once. The case workflow
-- hears of its detections coalesced (a count and the latest few), never one by one, so its
-- history grows with the procedure only.

CREATE TABLE detections (
    id                  bigserial PRIMARY KEY,
    idempotency_key     text NOT NULL UNIQUE,
    office              text NOT NULL,
    violation_category  text NOT NULL,
    -- The subject's primary identifier, `name=value` (api/intake.py IDENTIFIER_PRIORITY).
    subject_key         text NOT NULL,
    generation          integer NOT NULL CHECK (generation >= 1),
    case_id             text NOT NULL,
    opens               boolean NOT NULL,
    body_hash           text NOT NULL,
    event               jsonb NOT NULL,
    -- The prefix of the API key that sent it (not part of the body its hash covers).
    acting_key          text,
    received_at         timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX detections_one_opener_idx ON detections (case_id) WHERE opens;
-- The route's latest case: one index probe per detection.
CREATE INDEX detections_route_idx
    ON detections (office, violation_category, subject_key, generation DESC);
-- GET /cases/{id}/detections pages by id within a case.
CREATE INDEX detections_case_idx ON detections (case_id, id);

-- The case as of its last step (the step activity applies the step to the state it is given):
-- what `rectify cases reopen` starts a new run from when the last one failed or was terminated.
ALTER TABLE cases ADD COLUMN state jsonb;
-- How the case's run ended, when it ended without an outcome (failed, terminated, timed out):
-- {status, run_id, detected_at, detail}. Set by an activity when the API finds it so; cleared
-- when an operator reopens or closes the case.
ALTER TABLE cases ADD COLUMN interrupted jsonb;
