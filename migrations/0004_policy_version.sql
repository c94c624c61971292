-- The policy version a case was opened under (policies/*.yaml), kept in the register so a
-- supervisor can see which rules a case ran under; NULL for cases opened before policies existed.
--
-- The prior-case lookup (activities/policy.py, PriorCasesRepository) asks "which earlier cases
-- share any identifier with this subject": `subject_identifiers @> ANY($1::jsonb[])`, one
-- single-key object per identifier. A GIN index with jsonb_path_ops answers each containment
-- probe (a bitmap index scan per array element), so the lookup stays fast as the register grows.

ALTER TABLE cases ADD COLUMN policy_version text;

CREATE INDEX cases_subject_identifiers_idx ON cases USING gin (subject_identifiers jsonb_path_ops);
