"""The `rectify` command: operator commands that act on the whole system.

`rectify run` starts the whole engine, `rectify migrate` the schema (and seeds the working-day
calendar), `rectify calendar load|show|seed` the official holidays, `rectify keys
create|revoke|list` the API keys, `rectify cases reopen|close` an operator's decision on a case
whose run failed or was terminated. This package may import `activities/` (the calendar and policy
code it loads) and `wiring/`; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg
from pydantic import ValidationError

from activities.calendar import seed_calendar
from activities.policy import PolicyFileError, load_policies
from ops.calendar_cli import add_calendar_commands, format_seeded, run_calendar_command
from ops.campaign_cli import add_campaign_commands, run_campaign_command
from ops.cases_cli import add_cases_commands, run_cases_command
from ops.keys_cli import add_keys_commands, dev_keys_banner, run_keys_command
from wiring.logs import configure_logging
from wiring.migrate import MigrationError, migrate
from wiring.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rectify", description="Rectify: durable workflows for internet-enforcement cases"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run",
        help="start the whole engine: PostgreSQL, Temporal + UI, migrations, worker, API",
        description="Starts embedded PostgreSQL and Temporal unless DATABASE_URL / "
        "TEMPORAL_ADDRESS are set; Ctrl-C stops everything.",
    )
    commands.add_parser(
        "migrate",
        help="apply pending migrations to DATABASE_URL and seed the calendar from chinese-calendar",
    )
    add_calendar_commands(commands)
    add_campaign_commands(commands)
    add_cases_commands(commands)
    add_keys_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"rectify: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "run":
        from wiring.devstack import Banner, run_stack

        async def after_migrate(dsn: str) -> Banner:
            await seed_calendar(dsn)
            return await dev_keys_banner(dsn, settings)  # no dev key in production

        try:  # refuse a bad policy file before starting anything
            load_policies(settings.policies_dir)
        except PolicyFileError as exc:
            print(f"rectify run: {exc}", file=sys.stderr)
            return 2
        return run_stack(settings, after_migrate=after_migrate)
    if args.command == "calendar":
        return run_calendar_command(args, settings)
    if args.command == "campaign":
        return run_campaign_command(args, settings)
    if args.command == "keys":
        return run_keys_command(args, settings)
    if args.command == "cases":
        return run_cases_command(args, settings)
    try:
        dsn = settings.require_database_url()
        applied = asyncio.run(migrate(dsn, settings.migrations_dir))
        print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
        seeded = asyncio.run(seed_calendar(dsn))
    except (MigrationError, RuntimeError, OSError, asyncpg.PostgresError) as exc:
        print(f"rectify migrate: {exc}", file=sys.stderr)
        return 1
    print(format_seeded(seeded))
    return 0


def console() -> None:
    """Entry point of the `rectify` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
