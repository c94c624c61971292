"""Who may act: the roles an API key carries. The procedure table names, per command, the role
that gives it; the API's access rules are derived from that."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ENFORCEMENT_SYSTEM = "enforcement-system"
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
