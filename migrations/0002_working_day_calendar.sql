-- China's official working-day calendar, one row per day of every year whose arrangement is
-- loaded: statutory holidays (rest even on a weekday) and make-up working days (调休, a weekend
-- day that is worked). Seeded from the `chinese-calendar` package; an operator loads later years
-- from the State Council's notice (`rectify calendar load FILE`). A year with no row here is
-- counted as weekdays only and its deadlines are provisional.

CREATE TABLE calendar_years (
    year       integer PRIMARY KEY,
    source     text NOT NULL,
    loaded_by  text NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now(),
    revision   integer NOT NULL DEFAULT 1 CHECK (revision >= 1)
);

CREATE TABLE calendar_days (
    day             date PRIMARY KEY,
    year            integer NOT NULL REFERENCES calendar_years (year),
    is_working_day  boolean NOT NULL,
    kind            text NOT NULL
                    CHECK (kind IN ('workday', 'rest_day', 'holiday', 'makeup_workday')),
    holiday_name    text,
    CONSTRAINT calendar_days_in_its_year CHECK (extract(year FROM day) = year),
    CONSTRAINT calendar_days_working_matches_kind
        CHECK (is_working_day = (kind IN ('workday', 'makeup_workday')))
);

CREATE INDEX calendar_days_year_idx ON calendar_days (year);

-- Open cases whose deadline was counted without official data for some year: recomputed by
-- their workflows once the year is loaded.
ALTER TABLE cases ADD COLUMN deadline_provisional boolean NOT NULL DEFAULT false;

CREATE INDEX cases_open_provisional_deadline_idx ON cases (deadline_provisional)
    WHERE deadline_provisional AND closed_at IS NULL;
