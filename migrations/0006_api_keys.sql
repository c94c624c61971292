-- API keys: who may call the HTTP API, in which role, for which office.
--
-- A key reads `rk_<prefix>_<secret>`. The prefix (12 hex digits) is public: it names the key in
-- logs, in the audit trail (`payload.acting_key`) and in `rectify keys revoke`. The secret is
-- shown once, when the key is created, and never stored: only the SHA-256 of the whole key is
-- (see wiring/api_keys.py for why SHA-256 suffices). Written by `rectify keys`; the API only
-- reads this table. A key is revoked, never deleted, so the audit trail keeps naming a key
-- whose row still says whose it was.

CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix      text NOT NULL UNIQUE CHECK (prefix ~ '^[0-9a-f]{12}$'),
    key_hash    bytea NOT NULL CHECK (octet_length(key_hash) = 32),
    role        text NOT NULL
                CHECK (role IN ('enforcement-system', 'officer', 'supervisor', 'admin')),
    -- NULL: every office (supervisor and admin only).
    office      text CHECK (office IS NULL OR length(office) BETWEEN 1 AND 500),
    label       text NOT NULL CHECK (length(label) BETWEEN 1 AND 200),
    created_by  text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT api_keys_office_required
        CHECK (office IS NOT NULL OR role IN ('supervisor', 'admin'))
);
