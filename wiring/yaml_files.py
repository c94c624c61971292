"""YAML that fails with a line number: what the policy and calendar loaders read files with."""

from __future__ import annotations

from typing import Any

import yaml


class ReportingLoader(yaml.SafeLoader):
    """SafeLoader that reports a value its type cannot be read as (`2026-02-30`, `!!bool maybe`,
    a 5,000-digit number) as a YAML error at its line, where SafeLoader raises a bare ValueError,
    KeyError or AttributeError naming neither file nor line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            kind = str(node.tag).rsplit(":", 1)[-1]
            text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
            shown = repr(text if len(text) <= 40 else text[:37] + "...") if text else "the value"
            plain = isinstance(exc, ValueError | OverflowError) and str(exc)
            detail = f" ({str(exc)[:120]})" if plain else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"{shown} is not a valid {kind}{detail}", node.start_mark
            ) from None
