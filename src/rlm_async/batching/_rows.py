"""A batch's input and output files: the requests to run, and the ids already answered."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm_async._exceptions import ConfigurationError

__all__ = ["Job", "done_ids", "id_key", "read_jobs"]

_ROW_KEYS = {"id", "query", "context", "context_path", "json", "options"}


@dataclass(frozen=True)
class Job:
    """One request of a batch, checked.

    Attributes:
        index: Its position among the requests (0-based).
        id: The request's ``id``, as it came (a string or an integer).
        query: The question.
        context: The inline context (``None`` when ``context_path`` names a file).
        context_path: An absolute path to read the context from, or ``None``.
        as_json: Parse the file at ``context_path`` as JSON.
        options: Per-row overrides of the ``RLMOptions`` (a dict of fields), or ``None``.
        attempt: How many times the row was dispatched before (a lost worker's rows go again).
    """

    index: int
    id: str | int
    query: str
    context: Any = None
    context_path: str | None = None
    as_json: bool = False
    options: dict[str, Any] | None = None
    attempt: int = 0


def id_key(row_id: object) -> str:
    """The key an id is compared by: its JSON text, so ``1`` and ``"1"`` stay two ids."""
    return json.dumps(row_id)


def read_jobs(
    requests: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
) -> list[Job]:
    """The requests, checked: a JSONL file (one object a line) or the rows themselves.

    A ``context_path`` that is relative is read from the requests file's directory (from
    the working directory for rows given in Python).

    Raises:
        ConfigurationError: a line that is not a JSON object, a row without a string
            ``query`` or without an ``id``, with both or neither of ``context`` and
            ``context_path``, with an unknown key, or an id seen twice (each named by line).
    """
    if isinstance(requests, str | os.PathLike):
        path = Path(requests)
        base = path.parent
        rows = _read_lines(path)
        where = f"{path}, line"
    else:
        base = Path.cwd()
        rows = [(n, dict(row)) for n, row in enumerate(requests, start=1)]
        where = "request"
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for number, row in rows:
        job = _job(row, len(jobs), base, f"{where} {number}")
        key = id_key(job.id)
        if key in seen:
            raise ConfigurationError(
                f"{where} {number}: id {job.id!r} is also the id of {where} {seen[key]}; "
                "give every request its own id (the output and re-runs find rows by it)"
            )
        seen[key] = number
        jobs.append(job)
    return jobs


def _read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(
                    f"{path}, line {number}: not valid JSON ({exc}); each line is one request, "
                    'e.g. {"id": 1, "query": "...", "context": "..."}'
                ) from None
            if not isinstance(row, dict):
                raise ConfigurationError(
                    f"{path}, line {number}: a request is a JSON object, got {type(row).__name__}"
                )
            rows.append((number, row))
    return rows


def _job(row: Mapping[str, Any], index: int, base: Path, where: str) -> Job:
    unknown = sorted(set(row) - _ROW_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown keys {unknown}; a request has id, query, context or "
            "context_path, and optionally json (parse the file as JSON) and options"
        )
    row_id = row.get("id")
    if isinstance(row_id, bool) or not isinstance(row_id, str | int):
        raise ConfigurationError(f"{where}: give the request an id (a string or an integer)")
    query = row.get("query")
    if not isinstance(query, str):
        raise ConfigurationError(f"{where}: the query must be a string")
    if ("context" in row) == ("context_path" in row):
        raise ConfigurationError(
            f"{where}: give either context (inline) or context_path (a file), not "
            f"{'both' if 'context' in row else 'neither'}"
        )
    options = row.get("options")
    if options is not None and not isinstance(options, dict):
        raise ConfigurationError(f"{where}: options must be an object of RLMOptions fields")
    as_json = row.get("json", False)
    if not isinstance(as_json, bool):  # "false" would be true, and the file parsed as JSON
        raise ConfigurationError(f"{where}: json must be true or false (JSON booleans)")
    context_path = row.get("context_path")
    if context_path is not None:
        if not isinstance(context_path, str):
            raise ConfigurationError(f"{where}: context_path must be a string")
        context_path = str((base / context_path).resolve())
    return Job(
        index=index,
        id=row_id,
        query=query,
        context=row.get("context"),
        context_path=context_path,
        as_json=as_json,
        options=options,
    )


def done_ids(out: Path) -> set[str]:
    """The ids (as :func:`id_key`) the output file already holds an answer for.

    Rows with an error do not count: a re-run runs them again. A last line cut short (a
    batch killed mid-write) is left out; a broken line before it is an error.

    Raises:
        ConfigurationError: a line before the last that is not a JSON object with an id.
    """
    if not out.exists():
        return set()
    done: set[str] = set()
    lines = out.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ConfigurationError(
                f"{out}, line {number}: not a result row (invalid JSON); is it the output of "
                "an earlier batch? Give another --output or mend the file"
            ) from None
        if not isinstance(row, dict) or "id" not in row:
            raise ConfigurationError(f"{out}, line {number}: a result row has an id")
        if row.get("error") is None:
            done.add(id_key(row["id"]))
    return done
