"""The base of the option objects users build (``Budget``, ``ReplOptions``, ...).

Two promises every such object keeps: a misspelt field is an error, not a silently ignored
limit (``Budget(max_cost=0.5)`` must not run without a cost limit), and a bad value is a
:class:`~rlm_async.ConfigurationError` naming the field, like every other configuration
mistake, rather than a raw pydantic ``ValidationError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rlm_async._exceptions import ConfigurationError

__all__ = ["OptionsModel", "describe_validation_error"]


def describe_validation_error(what: str, exc: ValidationError, fields: Iterable[str] = ()) -> str:
    """One line naming each bad field and what is wrong with it (for a misspelt field, the
    fields there are)."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(value)"
        if err["type"] == "extra_forbidden" and fields:
            problems.append(f"{where}: no such field (the fields are: {', '.join(fields)})")
        else:
            problems.append(f"{where}: {err['msg']}")
    return f"invalid {what}: {'; '.join(problems)}"


class OptionsModel(BaseModel):
    """Frozen, unknown fields refused, bad values raised as ``ConfigurationError``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            fields = type(self).model_fields
            what = type(self).__name__
            raise ConfigurationError(describe_validation_error(what, exc, fields)) from None


def check_int(name: str, value: object, minimum: int) -> None:
    """A ``ConfigurationError`` unless ``value`` is an int (not a bool) ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int ≥ {minimum}, got {value!r}")
