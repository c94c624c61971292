"""One realistic example per command body, shown at /docs (tests check each one validates)."""

from __future__ import annotations

from typing import Any

OFFICER = "officer.li"
SUPERVISOR = "director.wang"
PARTY = "party:example-news"
AT = "2026-12-01T10:00:00+08:00"

COMMAND_EXAMPLES: dict[str, dict[str, Any]] = {
    "filing-decision": {
        "actor": OFFICER,
        "decision": "filed",
        "reasons": "Monitoring evidence of prohibited information.",
    },
    "filing-deadline-extension": {
        "actor": SUPERVISOR,
        "reasons": "Evidence from three platforms still to collect.",
    },
    "interview/schedule": {
        "actor": OFFICER,
        "scheduled_for": "2026-12-08T09:30:00+08:00",
        "place": "Beijing office, room 3",
        "reason": "Prohibited information on the home page",
        "attendees_required": ["editor-in-chief"],
    },
    "interview/record": {
        "actor": OFFICER,
        "officials": ["officer.li", "officer.wang"],
        "attended_by": ["editor-in-chief Zhang"],
        "summary": "The party admitted the facts and will rectify.",
    },
    "interview/no-show": {"actor": OFFICER, "notes": "Nobody attended; no excuse received."},
    "rectification-order": {
        "actor": OFFICER,
        "requirements": "Remove the items; fix the review workflow.",
        "interim_suspension": False,
    },
    "extension-request": {
        "actor": PARTY,
        "days": 5,
        "reasons": "The review system is being migrated.",
    },
    "extension-decision": {
        "actor": SUPERVISOR,
        "approved": True,
        "days": 5,
        "reasons": "A reasonable request made in time.",
    },
    "rectification-report": {
        "actor": PARTY,
        "summary": "All 37 items removed; reviewers added.",
        "evidence": ["removal-log.pdf", "review-policy-v2.pdf"],
    },
    "verification": {
        "actor": "officer.wang",
        "passed": True,
        "findings": "Checked on 12 Dec: items gone, workflow in place.",
    },
    "penalty-procedure": {
        "actor": OFFICER,
        "reasons": "Repeated violations after an earlier warning.",
    },
    "investigation-report": {
        "actor": OFFICER,
        "facts": "37 items between 1 and 20 Nov.",
        "evidence": ["snapshot-123", "log-export-7"],
        "proposed_measure": "fine",
    },
    "legal-review": {
        "actor": "legal.reviewer",
        "approved": True,
        "opinion": "Facts clear, evidence sufficient, basis correct.",
    },
    "collective-decision": {
        "actor": SUPERVISOR,
        "approved": True,
        "opinion": "Agreed: fine within the range.",
        "participants": ["director.wang", "deputy.chen", "deputy.zhou"],
    },
    "penalty-notice": {
        "actor": OFFICER,
        "measure": "fine",
        "fine_yuan": "30000",
        "facts": "37 items of prohibited information.",
        "reasons": "Content review duties neglected.",
        "legal_basis": "Cybersecurity Law art. 61",
    },
    "statements": {
        "actor": PARTY,
        "statement": "We accept the facts and ask for leniency.",
        "waive_rights": False,
    },
    "hearing-request": {"actor": PARTY},
    "hearing/schedule": {
        "actor": OFFICER,
        "hearing_at": "2026-12-21T09:30:00+08:00",
        "place": "Hearing room 1",
        "chair": "hearing.chair.sun",
    },
    "hearing/record": {
        "actor": "hearing.chair.sun",
        "record": "Both sides heard.",
        "attended": True,
    },
    "penalty-decision": {
        "actor": SUPERVISOR,
        "measure": "fine",
        "fine_yuan": "30000",
        "reasons": "Facts proven; no mitigation offered.",
        "legal_basis": "Cybersecurity Law art. 61",
    },
    "service": {"actor": OFFICER, "served_at": AT, "method": "direct"},
    "payments": {"actor": OFFICER, "amount_yuan": "30000", "paid_at": AT},
    "appeals": {"actor": OFFICER, "kind": "reconsideration", "event": "filed", "at": AT},
    "referrals": {
        "actor": OFFICER,
        "authority": "telecom_authority",
        "reasons": "Shut down the site and cancel its ICP filing.",
        "criminal": False,
    },
    "withdrawal": {
        "actor": OFFICER,
        "ground": "facts_not_proven",
        "reasons": "The screenshots cannot be tied to the party.",
    },
    "handling-limit-extension": {
        "actor": SUPERVISOR,
        "days": 30,
        "reasons": "Cross-border evidence still pending.",
    },
    "responsible-persons": {
        "actor": OFFICER,
        "persons": [
            {
                "name": "Zhang San",
                "role": "editor-in-chief",
                "measure": "warning",
                "notes": "Internal warning recorded by the platform.",
            }
        ],
    },
    "fine-decision": {
        "actor": SUPERVISOR,
        "amount_yuan": "30000",
        "legal_basis": "Cybersecurity Law art. 61",
        "reasons": "First-version case: fine after the warning.",
    },
}

REFERRAL_STEP_EXAMPLE: dict[str, Any] = {"actor": "agency.head", "notes": "Approved."}

CALENDAR_EXAMPLE: dict[str, Any] = {
    "year": 2027,
    "source": "State Council notice on the 2027 public holidays",
    "holidays": [{"name": "Spring Festival", "from": "2027-02-06", "to": "2027-02-14"}],
    "makeup_workdays": [{"date": "2027-02-20", "for": "Spring Festival"}],
}


def body_example(example: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` that puts an example on the operation's JSON body."""
    return {"requestBody": {"content": {"application/json": {"example": example}}}}
