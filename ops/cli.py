"""The `rectify` command: operator commands that act on the whole system.

`rectify run` starts the whole engine, `rectify migrate` the schema. This package may import
`activities/` (the calendar and policy code it loads) and `wiring/`; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError

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
    commands.add_parser("migrate", help="apply pending migrations to DATABASE_URL")
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
        from wiring.devstack import run_stack

        return run_stack(settings)
    try:
        applied = asyncio.run(migrate(settings.require_database_url(), settings.migrations_dir))
    except (MigrationError, RuntimeError) as exc:
        print(f"rectify migrate: {exc}", file=sys.stderr)
        return 1
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    return 0


def console() -> None:
    """Entry point of the `rectify` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
