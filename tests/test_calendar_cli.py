"""`rectify calendar load|show|seed` and `rectify migrate`, against scratch databases.

Every test here loads or replaces years, so none of them touches the session database: each gets
its own database on the session server. `ops.cli.main` runs in a thread (it calls asyncio.run).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from activities.calendar import (
    CalendarFileError,
    CalendarRepository,
    arrangement_from_package,
    load_arrangement_file,
)
from ops.cli import main
from tests.conftest import scratch_database
from wiring.settings import REPO_ROOT

EXAMPLE_2027 = REPO_ROOT / "ops" / "examples" / "calendar-2027.yaml"


@pytest.fixture
async def scratch_dsn(
    pg_dsn: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """A fresh database with the schema (no calendar yet), named by DATABASE_URL."""
    async with scratch_database(pg_dsn) as dsn:
        monkeypatch.setenv("DATABASE_URL", dsn)
        monkeypatch.setenv("LOG_LEVEL", "WARNING")
        yield dsn


async def rectify(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def calendar_state(dsn: str) -> list[tuple[int, int, str, int]]:
    """(year, revision, source, days) for every loaded year: what a failed command must keep."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT y.year, y.revision, y.source, count(d.day) AS days
              FROM calendar_years y LEFT JOIN calendar_days d USING (year)
             GROUP BY y.year ORDER BY y.year
            """
        )
    finally:
        await conn.close()
    return [(r["year"], r["revision"], r["source"], r["days"]) for r in rows]


async def test_migrate_seeds_the_calendar_once(
    scratch_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await rectify("migrate") == 0
    out = capsys.readouterr().out
    assert "migrations applied: none (up to date)" in out
    assert "calendar years seeded from chinese-calendar: 2004-2026" in out
    seeded = await calendar_state(scratch_dsn)
    assert [y for y, *_ in seeded] == list(range(2004, 2027))
    assert all(rev == 1 and n in (365, 366) for _, rev, _, n in seeded)

    assert await rectify("migrate") == 0
    assert "nothing seeded" in capsys.readouterr().out
    assert await rectify("calendar", "seed") == 0
    assert "nothing seeded" in capsys.readouterr().out
    assert await calendar_state(scratch_dsn) == seeded


async def test_load_then_reload_increments_the_revision(
    scratch_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await rectify("calendar", "load", str(EXAMPLE_2027), "--by", "officer.wang") == 0
    out = capsys.readouterr().out
    assert "calendar 2027 loaded from calendar-2027.yaml by officer.wang: revision 1" in out
    assert "holidays: 7 (29 days off), make-up working days: 5" in out
    assert "open cases with a provisional deadline: 0" in out

    conn = await asyncpg.connect(scratch_dsn)
    try:
        national_day = await conn.fetch(
            "SELECT day, kind, holiday_name FROM calendar_days "
            "WHERE day BETWEEN '2027-10-01' AND '2027-10-10' ORDER BY day"
        )
        assert [r["kind"] for r in national_day] == ["holiday"] * 7 + [
            "workday",
            "makeup_workday",
            "rest_day",
        ]
        assert national_day[8]["holiday_name"] == "National Day"
        loaded_by = await conn.fetchval("SELECT loaded_by FROM calendar_years WHERE year = 2027")
        assert loaded_by == "officer.wang"
    finally:
        await conn.close()

    assert await rectify("calendar", "load", str(EXAMPLE_2027)) == 0
    assert "revision 2" in capsys.readouterr().out
    assert [(y, rev, n) for y, rev, _, n in await calendar_state(scratch_dsn)] == [(2027, 2, 365)]


async def test_load_reports_open_cases_with_a_provisional_deadline(
    scratch_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = await asyncpg.connect(scratch_dsn)
    try:
        for case_id, provisional, closed in (
            ("A", True, False),
            ("B", True, True),
            ("C", False, False),
        ):
            await conn.execute(
                """
                INSERT INTO cases (case_id, workflow_id, subject_kind, subject_name,
                    violation_category, legal_basis, severity, office, opened_by, stage,
                    opened_at, updated_at, last_seq, deadline_provisional, closed_at, outcome)
                VALUES ($1, 'case:' || $1, 'website', 'x', 'v', 'l', 'general', 'beijing', 'o',
                    'rectifying', now(), now(), 1, $2,
                    CASE WHEN $3 THEN now() END, CASE WHEN $3 THEN 'rectified' END)
                """,
                case_id,
                provisional,
                closed,
            )
    finally:
        await conn.close()
    assert await rectify("calendar", "load", str(EXAMPLE_2027)) == 0
    assert "open cases with a provisional deadline: 1 " in capsys.readouterr().out


async def test_show_a_year_with_and_without_data(
    scratch_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await rectify("calendar", "show", "2027") == 0
    assert capsys.readouterr().out.strip() == "no data for 2027: deadlines in it are provisional"

    assert await rectify("calendar", "load", str(EXAMPLE_2027), "--by", "officer.wang") == 0
    capsys.readouterr()
    assert await rectify("calendar", "show", "2027") == 0
    out = capsys.readouterr().out
    assert "calendar 2027: revision 1, loaded by officer.wang" in out
    assert "source: EXAMPLE" in out
    assert "2027-10-01 to 2027-10-07  National Day (7 days)" in out
    assert "2027-10-09 Saturday  for National Day" in out
    assert "make-up working days (5)" in out


async def test_show_refuses_a_year_that_is_not_one(
    scratch_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await rectify("calendar", "show", "next-year") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid year 'next-year'" in err


async def test_seed_never_overwrites_an_operator_loaded_year(
    scratch_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # An operator reloaded 2026 (say, from the State Council notice itself) before any seed.
    corrected = arrangement_from_package(2026).model_copy(update={"source": "operator fix"})
    conn = await asyncpg.connect(scratch_dsn)
    try:
        await CalendarRepository(conn).replace_year(corrected, "officer.wang")
    finally:
        await conn.close()
    assert await rectify("calendar", "seed") == 0
    assert "2004-2025" in capsys.readouterr().out
    state = {y: (rev, src) for y, rev, src, _ in await calendar_state(scratch_dsn)}
    assert state[2026] == (1, "operator fix")
    assert len(state) == 23


async def test_failed_replace_leaves_the_year_as_it_was(scratch_dsn: str) -> None:
    conn = await asyncpg.connect(scratch_dsn)
    try:
        repo = CalendarRepository(conn)
        await repo.replace_year(load_arrangement_file(EXAMPLE_2027), "officer.wang")
        before = await calendar_state(scratch_dsn)
        # PostgreSQL refuses a NUL in text: the failure comes after the old days were deleted.
        example = load_arrangement_file(EXAMPLE_2027)
        nul = example.holidays[0].model_copy(update={"name": "New Year\x00"})
        broken = example.model_copy(update={"source": "new", "holidays": [nul]})
        with pytest.raises(asyncpg.PostgresError):
            await repo.replace_year(broken, "officer.li")
        assert await calendar_state(scratch_dsn) == before
    finally:
        await conn.close()


# --- arrangement files that must be refused ---------------------------------------------------

GOOD = """\
year: 2027
source: test
holidays:
  - {name: New Year's Day, from: 2027-01-01, to: 2027-01-03}
  - {name: National Day, from: 2027-10-01, to: 2027-10-07}
makeup_workdays:
  - {date: 2027-10-09, for: National Day}
"""

BAD_FILES = {
    "makeup-on-a-weekday": (
        GOOD.replace("date: 2027-10-09", "date: 2027-02-09"),
        "makeup_workdays[0].date: 2027-02-09 is a Tuesday; "
        "a make-up working day is a Saturday or Sunday",
    ),
    "date-outside-the-year": (
        GOOD.replace("to: 2027-01-03", "to: 2028-01-03"),
        "holidays[0].to: 2028-01-03 is not in 2027",
    ),
    "from-after-to": (
        GOOD.replace("from: 2027-10-01, to: 2027-10-07", "from: 2027-10-07, to: 2027-10-01"),
        "holidays[1].to: 2027-10-01 is before from (2027-10-07)",
    ),
    "overlapping-ranges": (
        GOOD.replace("from: 2027-10-01", "from: 2027-01-02"),
        "holidays[1]: National Day 2027-01-02..2027-10-07 overlaps holidays[0]",
    ),
    "holiday-and-makeup": (
        GOOD.replace("date: 2027-10-09", "date: 2027-10-02"),
        "makeup_workdays[0].date: 2027-10-02 is inside holidays[1] (National Day); "
        "a day cannot be both",
    ),
    "unknown-key": (
        GOOD.replace("{name: National Day, from:", "{name: National Day, form:"),
        "holidays[1].form: unknown key",
    ),
    "missing-source": (GOOD.replace("source: test\n", ""), "source: missing"),
    "impossible-date": (
        GOOD.replace("to: 2027-01-03", "to: 2027-02-30"),
        "holidays[0].to: Input should be a valid date",
    ),
    "year-not-a-number": (GOOD.replace("year: 2027", "year: next"), "year: Input should be"),
    "not-yaml": (GOOD + "  - {date: [\n", "not valid YAML"),
    "not-a-mapping": ("- 2027\n", "expected a mapping with keys year, source"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_a_bad_arrangement_file_is_refused_and_writes_nothing(
    case: str, scratch_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, message = BAD_FILES[case]
    path = tmp_path / f"calendar-{case}.yaml"
    path.write_text(text, encoding="utf-8")
    assert await rectify("calendar", "load", str(EXAMPLE_2027), "--by", "first") == 0
    before = await calendar_state(scratch_dsn)
    capsys.readouterr()

    assert await rectify("calendar", "load", str(path), "--by", "second") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"rectify calendar load: calendar-{case}.yaml: ")
    assert message in captured.err
    assert await calendar_state(scratch_dsn) == before
    with pytest.raises(CalendarFileError, match=rf"^calendar-{case}\.yaml: "):
        load_arrangement_file(path)


async def test_a_missing_file_is_refused(
    scratch_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await rectify("calendar", "load", str(tmp_path / "calendar-2031.yaml")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "calendar-2031.yaml: no such file" in err
    assert await calendar_state(scratch_dsn) == []


async def test_a_json_file_loads_like_yaml(scratch_dsn: str, tmp_path: Path) -> None:
    as_json = tmp_path / "calendar-2027.json"
    as_json.write_text(
        load_arrangement_file(EXAMPLE_2027).model_dump_json(by_alias=True), encoding="utf-8"
    )
    assert load_arrangement_file(as_json) == load_arrangement_file(EXAMPLE_2027)
    assert await rectify("calendar", "load", str(as_json)) == 0
    assert [y for y, *_ in await calendar_state(scratch_dsn)] == [2027]
