"""`rectify campaign import FILE.csv`: open one case per CSV row under a campaign.

Columns: `kind,name` and any of `domain,icp_filing,app_package,unified_social_credit_code,
account_id`. Every row is checked first; one bad row stops the import with its line and column
named, and nothing is started.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from domain.models import Subject, SubjectIdentifiers
from wiring.keys import load_keyring
from wiring.settings import Settings
from wiring.temporal import connect_temporal
from workflows.campaign import (
    MAX_SUBJECTS,
    CampaignInput,
    CampaignProgress,
    CampaignWorkflow,
    campaign_workflow_id,
)

IDENTIFIER_COLUMNS = tuple(SubjectIdentifiers.model_fields)
REQUIRED_COLUMNS = ("kind", "name")


class CampaignFileError(ValueError):
    """A CSV that cannot be imported; the message names the file, line and column."""


def read_subjects(path: Path) -> list[Subject]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CampaignFileError(f"{path.name}: cannot read: {exc.strerror}") from exc
    reader = csv.DictReader(text.splitlines())
    columns = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in (*REQUIRED_COLUMNS, *IDENTIFIER_COLUMNS)]
    if missing or unknown:
        problems = [f"missing column {c!r}" for c in missing]
        problems += [f"unknown column {c!r}" for c in unknown]
        raise CampaignFileError(f"{path.name}: line 1: {'; '.join(problems)}")
    subjects, errors = [], []
    for row in reader:
        line = reader.line_num
        identifiers = {c: row[c].strip() for c in IDENTIFIER_COLUMNS if (row.get(c) or "").strip()}
        try:
            subjects.append(
                Subject.model_validate(
                    {
                        "kind": (row["kind"] or "").strip(),
                        "name": row["name"],
                        "identifiers": identifiers,
                    }
                )
            )
        except ValidationError as exc:
            for error in exc.errors():
                loc = [str(part) for part in error["loc"]]
                # A CSV column is named by itself, not by the model's nesting.
                column = ".".join(p for p in loc if p != "identifiers") or ".".join(loc) or "row"
                message = error["msg"].removeprefix("Value error, ")
                errors.append(f"{path.name}: line {line}: {column}: {message}")
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise CampaignFileError("\n".join(shown))
    if not subjects:
        raise CampaignFileError(f"{path.name}: no subjects (only a header?)")
    if len(subjects) > MAX_SUBJECTS:
        raise CampaignFileError(
            f"{path.name}: {len(subjects)} subjects; one campaign takes at most {MAX_SUBJECTS}"
        )
    return subjects


def progress_bar(progress: CampaignProgress, width: int = 30) -> str:
    done = progress.started + progress.already_open
    filled = width * done // max(progress.total, 1)
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{progress.total} cases started"


async def import_campaign(
    settings: Settings, campaign: CampaignInput, out: TextIO, poll_seconds: float = 0.5
) -> CampaignProgress:
    keyring = load_keyring(settings)
    client = await connect_temporal(
        settings.require_temporal_address(), settings.temporal_namespace, keyring=keyring
    )
    digests = [keyring.subject_digests(s.identifiers) for s in campaign.subjects]
    handle = await client.start_workflow(
        CampaignWorkflow.run,
        campaign.model_copy(update={"subject_digests": digests}),
        id=campaign_workflow_id(campaign.campaign_id),
        task_queue=settings.task_queue,
    )
    while True:
        progress = await handle.query(CampaignWorkflow.progress)
        out.write(f"\r{progress_bar(progress)}")
        out.flush()
        if progress.done:
            out.write("\n")
            return progress
        await asyncio.sleep(poll_seconds)


def add_campaign_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    campaign = commands.add_parser("campaign", help="campaigns (special actions)")
    sub = campaign.add_subparsers(dest="campaign_command", required=True, metavar="COMMAND")
    imp = sub.add_parser("import", help="open one case per row of a CSV of subjects")
    imp.add_argument("file", type=Path)
    imp.add_argument("--title", required=True)
    imp.add_argument("--office", required=True)
    imp.add_argument("--category", required=True, help="violation category (policy key)")
    imp.add_argument("--legal-basis", required=True)
    imp.add_argument("--severity", default="general")
    imp.add_argument("--by", required=True, dest="opened_by", help="the acting officer")
    imp.add_argument("--id", dest="campaign_id", help="default: one is assigned")


def run_campaign_command(args: argparse.Namespace, settings: Settings) -> int:
    prefix = "rectify campaign import"
    try:
        subjects = read_subjects(args.file)
        campaign = CampaignInput(
            campaign_id=args.campaign_id or f"CP-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:8]}",
            title=args.title,
            office=args.office,
            violation_category=args.category,
            legal_basis=args.legal_basis,
            severity=args.severity,
            opened_by=args.opened_by,
            subjects=subjects,
        )
    except CampaignFileError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"{prefix}: {fields}", file=sys.stderr)
        return 2
    try:
        progress = asyncio.run(import_campaign(settings, campaign, sys.stderr))
    except RuntimeError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 1
    print(
        f"campaign {campaign.campaign_id}: {progress.started} cases opened, "
        f"{progress.already_open} already open"
    )
    return 0
