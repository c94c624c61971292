"""Policy files: read and checked whole, one line per problem naming the file and the field.

Policies are data (`policies/*.yaml`, one version per file, each with the date it takes effect).
The worker loads the folder once at start to fix each opening case's policy slice; the API loads
it too, to refuse at the edge a detection whose category no policy in force knows (before it
would open a case that cannot open). Reading files is wiring; deciding is domain/policy.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from domain.policy import Policy
from wiring.yaml_files import ReportingLoader

POLICY_SUFFIXES = (".yaml", ".yml", ".json")
LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def local_date(moment: datetime) -> date:
    """The Asia/Shanghai calendar day of an instant (a naive time is taken as UTC): the day
    whose policy is in force."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(LOCAL_TZ).date()


class PolicyFileError(ValueError):
    """A policy file or folder that cannot be used: one line per problem, each naming the file."""

    @property
    def problems(self) -> list[str]:
        return str(self).splitlines()


class PolicyNotFound(LookupError):
    """No policy in force on a date, or no policy of a version."""


# --- reading files ---------------------------------------------------------------------------


class _PolicyYamlLoader(ReportingLoader):
    """Refuses a key given twice in one mapping (YAML would keep the last)."""


def _construct_mapping_once(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            earlier = seen.get(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if earlier is not None:
            raise yaml.constructor.ConstructorError(
                f"in the mapping at line {node.start_mark.line + 1}",
                node.start_mark,
                f"key {key!r} is given twice (first at line {earlier.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node)


_PolicyYamlLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_once
)


def _json_object_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (json.loads would keep the last)."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {key!r} is given twice")
        obj[key] = value
    return obj


def _parse(path: Path, text: str) -> Any:
    name = path.name
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text, object_pairs_hook=_json_object_once)
        except json.JSONDecodeError as exc:
            raise PolicyFileError(
                f"{name}: line {exc.lineno}, column {exc.colno}: JSON syntax error: {exc.msg}"
            ) from None
        except ValueError as exc:
            raise PolicyFileError(f"{name}: JSON error: {exc}") from None
        except RecursionError:
            raise PolicyFileError(f"{name}: JSON error: nested too deeply") from None
    try:
        return yaml.load(text, Loader=_PolicyYamlLoader)
    except RecursionError:
        raise PolicyFileError(f"{name}: YAML error: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "not valid YAML"
        raise PolicyFileError(f"{name}: {where}YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        # One line per problem: the reader's message spans two ("...\n  in <unicode string>").
        detail = " ".join(str(exc).split())
        raise PolicyFileError(f"{name}: YAML syntax error: {detail}") from None


def _field_path(loc: tuple[int | str, ...]) -> str:
    # A key with a line break (or another unprintable character) is quoted: one line per problem.
    return ".".join(str(p) if str(p).isprintable() else repr(p) for p in loc) or "(top level)"


def _message(error: ErrorDetails) -> str:
    message = error["msg"]
    prefix = "Value error, "
    return message[len(prefix) :] if message.startswith(prefix) else message


def validation_lines(name: str, exc: ValidationError) -> list[str]:
    """One line per pydantic error: `file: field.path: message`."""
    return [f"{name}: {_field_path(error['loc'])}: {_message(error)}" for error in exc.errors()]


def load_policy_file(path: Path) -> Policy:
    """Read and validate one policy file (.yaml, .yml or .json)."""
    name = path.name
    if path.suffix.lower() not in POLICY_SUFFIXES:
        raise PolicyFileError(f"{name}: a policy file ends in {', '.join(POLICY_SUFFIXES)}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFileError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise PolicyFileError(f"{name}: cannot read the file: {exc.strerror or exc}") from None
    data = _parse(path, text)
    if data is None:
        raise PolicyFileError(f"{name}: the file is empty")
    if not isinstance(data, dict):
        raise PolicyFileError(
            f"{name}: the top level must be a mapping of policy fields, not {type(data).__name__}"
        )
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyFileError("\n".join(validation_lines(name, exc))) from None


# --- the set of versions ---------------------------------------------------------------------


class PolicySet:
    """Every policy version known to the worker; the one in force on a day is the latest to have
    taken effect by then."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        ordered = sorted(policies, key=lambda policy: policy.effective_from)
        if not ordered:
            raise ValueError("a policy set needs at least one policy")
        by_version: dict[str, Policy] = {}
        by_date: dict[date, Policy] = {}
        for policy in ordered:
            if policy.version in by_version:
                raise ValueError(f"policy version {policy.version!r} is given twice")
            same_day = by_date.get(policy.effective_from)
            if same_day is not None:
                raise ValueError(
                    f"policies {same_day.version!r} and {policy.version!r} both take effect on "
                    f"{policy.effective_from.isoformat()}"
                )
            by_version[policy.version] = policy
            by_date[policy.effective_from] = policy
        self._ordered = ordered
        self._by_version = by_version

    def active(self, on: date) -> Policy:
        """The policy in force on a (local) day."""
        in_force = [policy for policy in self._ordered if policy.effective_from <= on]
        if not in_force:
            first = self._ordered[0]
            raise PolicyNotFound(
                f"no policy in force on {on.isoformat()}: the earliest, {first.version!r}, "
                f"takes effect on {first.effective_from.isoformat()}"
            )
        return in_force[-1]

    def get(self, version: str) -> Policy:
        try:
            return self._by_version[version]
        except KeyError:
            raise PolicyNotFound(
                f"no policy version {version!r}; known: {', '.join(self.versions)}"
            ) from None

    @property
    def versions(self) -> list[str]:
        """Versions in the order they take effect."""
        return [policy.version for policy in self._ordered]

    def __iter__(self) -> Iterator[Policy]:
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self._ordered)


def load_policies(folder: Path) -> PolicySet:
    """Load every *.yaml, *.yml and *.json in the folder; refuse the folder whole on any problem."""
    if not folder.is_dir():
        raise PolicyFileError(f"{folder}: policy folder not found")
    paths = sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.suffix.lower() in POLICY_SUFFIXES
    )
    if not paths:
        raise PolicyFileError(f"{folder}: no policy files (*.yaml, *.yml, *.json)")
    problems: list[str] = []
    loaded: list[tuple[Path, Policy]] = []
    for path in paths:
        try:
            loaded.append((path, load_policy_file(path)))
        except PolicyFileError as exc:
            problems.extend(exc.problems)
    versions: dict[str, Path] = {}
    effective: dict[date, tuple[Path, Policy]] = {}
    for path, policy in loaded:
        first = versions.setdefault(policy.version, path)
        if first is not path:
            problems.append(
                f"{path.name}: version: {policy.version!r} is already defined in {first.name}"
            )
            continue
        same_day = effective.setdefault(policy.effective_from, (path, policy))
        if same_day[0] is not path:
            problems.append(
                f"{path.name}: effective_from: {policy.effective_from.isoformat()} is also when "
                f"{same_day[1].version!r} ({same_day[0].name}) takes effect"
            )
    if problems:
        raise PolicyFileError("\n".join(problems))
    return PolicySet(policy for _, policy in loaded)
