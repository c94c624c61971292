-- Reading the register: GET /cases (filters, keyset pages ordered by opened_at desc, case_id
-- desc) and GET /stats (one Asia/Shanghai year of the register and the audit trail). The SQL is
-- in api/read_models.py; bench/stats_query.py times it at 100,000 cases with and without these
-- indexes.
--
-- cases_opened_at_idx (0001) stays the unfiltered list's index (a backward scan plus an
-- incremental sort on case_id).
--
-- The filtered lists' indexes are partial on `<column> IS NOT NULL` although the columns are
-- NOT NULL: the planner then uses one only for a query that constrains its leading column
-- (`office = $1` implies `office IS NOT NULL`). Without that, PostgreSQL 18's skip scan makes any
-- index with opened_at second a candidate for every opened_at range, and on a small register it
-- outbids the GIN index of the prior-case lookup (tests/test_policy.py checks that plan).

-- The campaign a case was opened under (POST /campaigns); NULL for a case opened on its own.
ALTER TABLE cases ADD COLUMN IF NOT EXISTS campaign_id text;

-- Filtered lists, each in keyset order within its filter; the office one also serves the
-- stats' "opened in the year" count for one office.
CREATE INDEX IF NOT EXISTS cases_office_opened_idx ON cases (office, opened_at, case_id)
    WHERE office IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_category_opened_idx
    ON cases (violation_category, opened_at, case_id) WHERE violation_category IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_stage_opened_idx ON cases (stage, opened_at, case_id)
    WHERE stage IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_campaign_opened_idx ON cases (campaign_id, opened_at, case_id)
    WHERE campaign_id IS NOT NULL;

-- Cases closed in a year: the outcome counts and the median days to close come from one
-- index-only pass, with or without an office or category (a closed row no longer changes, so
-- its heap page stays all-visible); one office's closed cases have their own, narrower index.
CREATE INDEX IF NOT EXISTS cases_closed_at_idx ON cases (closed_at)
    INCLUDE (opened_at, outcome, office, violation_category)
    WHERE closed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_office_closed_idx ON cases (office, closed_at)
    WHERE closed_at IS NOT NULL;

-- The subject filter: a case-insensitive substring of the name (trigrams; pg_trgm is a trusted
-- extension, so the database owner may create it). Exact identifier matches use the GIN index
-- of 0004.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS cases_subject_name_trgm_idx ON cases USING gin (subject_name gin_trgm_ops);

-- The stats' actions of a year (interviews, penalty decisions, referrals sent, handling-limit
-- flags): a range scan per action, the case id in the index for the office/category join.
CREATE INDEX IF NOT EXISTS case_audit_action_occurred_idx ON case_audit (action, occurred_at)
    INCLUDE (case_id);
