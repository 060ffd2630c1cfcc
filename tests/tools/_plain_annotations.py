"""Tools whose annotations are evaluated (no ``from __future__ import annotations``, unlike
the test modules): their signatures are rendered from the types themselves."""

import dataclasses
import enum
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, Field


class Status(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class Customer(BaseModel):
    id: str
    tags: list[str] = []


@dataclasses.dataclass
class Window:
    start: int
    end: int


def lookup(
    customer: Customer,
    status: Status = Status.OPEN,
    window: Optional[Window] = None,  # noqa: UP045 - the old spelling, rendered the new way
    fields: Sequence[str] = ("id", "status"),
    mode: Literal["fast", "full"] = "fast",
    limit: Annotated[int, Field(ge=1, le=100)] = 10,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, int | str]]:
    """Look a customer up."""
    return [{"id": customer.id, "status": status.value, "limit": limit}]
