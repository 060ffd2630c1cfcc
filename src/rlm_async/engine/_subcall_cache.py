"""The sub-call cache: an identical sub-call is sent once, and (opt-in) once across runs.

Two layers, chosen by ``RLM(cache=...)``:

* :class:`SubCallCache`, one per completion tree (the root run and its sub-RLMs) or per
  session (all its completions): in memory, single flight. The first of several identical
  sub-calls is sent; duplicates that arrive while it is in flight wait for it (a batch of
  40 copies of one prompt is one provider call), later ones are answered at once. On by
  default; ``cache=False`` turns it off (each copy sampled on its own, e.g. to vote).
* :class:`SubCallStore`, opt-in (``cache=path``, or ``cache=True`` for
  :func:`default_cache_path`): one SQLite file, so a re-run of a notebook or a test pays
  nothing for the sub-calls it already made. WAL mode and a busy timeout make it safe for
  several processes at once; every query runs in a worker thread, never on the event loop.
  The file is made private (0600) before SQLite opens it: answers may quote the context.

Identical means the same key: a SHA-256 of the provider's name and endpoint, the model, and
the whole request (messages, system prompt, ``max_tokens``, ``temperature``,
``response_schema``, ``extra``). API keys and headers are not part of a request, and the
store keeps only the hash, the model's label, the time and the answer: nothing in it can
be used to call a provider.

Only answers are cached, never errors: a failed call is sent again by the next sub-call
that asks (duplicates waiting on it when it failed get its error). The store has no
eviction: each entry is about the size of its answer; delete the file to empty it.
A cache hit is marked ``cached=True`` on its ``SubCallFinished`` event and counts no usage
(nothing was paid for it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async._exceptions import ConfigurationError
from rlm_async._logging import get_logger
from rlm_async._tokens import request_chars
from rlm_async._types import Completion, Usage

if TYPE_CHECKING:
    from rlm_async.providers import ResolvedModel
    from rlm_async.providers._base import CompletionRequest

__all__ = [
    "CacheChoice",
    "SubCallCache",
    "SubCallStore",
    "cache_key",
    "cache_path",
    "default_cache_path",
]

#: What ``RLM(cache=...)`` takes: ``None`` (in memory), ``False`` (off), ``True`` (the
#: default file too) or a path.
CacheChoice = str | os.PathLike[str] | bool | None

_log = get_logger("rlm_async.engine")

# Hashing a request copies it into JSON: past this many characters it is done in a worker
# thread, so a multi-megabyte prompt does not stall the loop.
_OFF_LOOP_CHARS = 1 << 20
# Seconds a write waits for another process's write to finish before giving up.
_BUSY_TIMEOUT = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subcalls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    completion TEXT NOT NULL
)
"""


def default_cache_path() -> Path:
    """Where ``RLM(cache=True)`` keeps its store: ``$XDG_CACHE_HOME/rlm-async/`` (default
    ``~/.cache/rlm-async/``) ``subcalls.sqlite3``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rlm-async" / "subcalls.sqlite3"


def cache_path(cache: object) -> Path | None:
    """The store's file for ``RLM(cache=...)``, or ``None`` when there is none.

    Raises:
        ConfigurationError: not a path, a bool or ``None``; or a path that is a directory.
    """
    if cache is None or cache is False:
        return None
    if cache is True:
        return default_cache_path()
    if not isinstance(cache, str | os.PathLike) or not os.fspath(cache):
        raise ConfigurationError(
            "cache must be a file path (str or pathlib.Path) for the sub-call store, True "
            f"for {default_cache_path()}, False to turn caching off, or None; got {cache!r}"
        )
    path = Path(os.fspath(cache)).expanduser()
    if path.is_dir():
        raise ConfigurationError(
            f"cache {os.fspath(path)!r} is a directory; pass a file path, e.g. "
            f"{os.fspath(path / 'subcalls.sqlite3')!r}"
        )
    return path


def _key_of(target: ResolvedModel, request: CompletionRequest) -> str:
    endpoint = getattr(target.provider, "base_url", None)
    # Built from strings, not dicts: a batch of 3,000 sub-calls made ~10 short-lived
    # containers each here (model_dump, the identity dict), and their allocations set off
    # full garbage collections over the whole batch's suspended calls (~40 us a sub-call).
    # Every field of the request counts (a field added later is keyed without a change
    # here); the texts (the prompt: ~40 KB a sub-call, often more) are hashed as their
    # UTF-8 bytes, each after its length.
    head = [
        target.provider.name,
        endpoint if isinstance(endpoint, str) else "",
        target.label,
        "system" if request.system is not None else "",
    ]
    for name in _REQUEST_FIELDS:
        value = getattr(request, name)
        head.append(
            repr(value)
            if value is None or isinstance(value, str | int | float)
            else json.dumps(value, sort_keys=True, default=str)
        )
    head.extend(message.role for message in request.messages)
    digest = hashlib.sha256("\0".join(head).encode("utf-8", "surrogatepass"))
    for text in (request.system or "", *(message.content for message in request.messages)):
        data = text.encode("utf-8", "surrogatepass")  # a lone surrogate is hashed, not refused
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _request_fields() -> tuple[str, ...]:
    from rlm_async.providers._base import CompletionRequest

    return tuple(name for name in CompletionRequest.model_fields if name not in _TEXTS)


_TEXTS = frozenset({"messages", "system"})
_REQUEST_FIELDS = _request_fields()


def _key_now(target: ResolvedModel, request: CompletionRequest) -> str | None:
    """The key, computed here when the request is small; ``None``: compute it off the loop."""
    return _key_of(target, request) if request_chars(request) < _OFF_LOOP_CHARS else None


async def cache_key(target: ResolvedModel, request: CompletionRequest) -> str:
    """The key of a sub-call: a hash of who serves it and of the whole request."""
    key = _key_now(target, request)
    if key is not None:
        return key
    return await anyio.to_thread.run_sync(_key_of, target, request)


class SubCallStore:
    """The persistent layer: answers in one SQLite file, shared by runs and processes.

    Opened on first use (a bad path is a ``ConfigurationError`` then); every query runs in a
    worker thread. A read or write that fails once open (a locked or full disk) is logged
    and treated as a miss: the run goes on, paying for that call.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, used by one worker thread at a time
        self._closed = False

    def __repr__(self) -> str:
        return f"SubCallStore({os.fspath(self.path)!r})"

    async def get(self, key: str) -> Completion | None:
        """The stored answer for ``key``, or ``None``.

        Raises:
            ConfigurationError: the file cannot be opened as a store.
        """
        row = await anyio.to_thread.run_sync(self._query, key)
        if row is None:
            return None
        try:
            return Completion.model_validate_json(row)
        except ValueError:  # written by another version, or damaged: a miss
            return None

    async def put(self, key: str, model: str, completion: Completion) -> None:
        """Keep ``completion`` as the answer for ``key``."""
        data = completion.model_dump_json()
        await anyio.to_thread.run_sync(self._insert, key, model, data)

    def close(self) -> None:
        """Close the file; later reads are misses and writes are dropped."""
        with self._lock:
            self._closed = True
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _connect(self) -> sqlite3.Connection | None:
        if self._closed:
            return None
        if self._connection is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
                connection = sqlite3.connect(
                    self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
                )
                try:
                    _prepare(connection)
                except BaseException:
                    connection.close()
                    raise
            except (OSError, sqlite3.Error) as exc:
                raise ConfigurationError(
                    f"the sub-call cache {os.fspath(self.path)!r} cannot be used: {exc}; pass "
                    "a writable file path as cache=, or cache=None to keep it in memory"
                ) from exc
            self._connection = connection
        return self._connection

    def _query(self, key: str) -> str | None:
        with self._lock:
            connection = self._connect()
            if connection is None:
                return None
            try:
                row = connection.execute(
                    "SELECT completion FROM subcalls WHERE key = ?", (key,)
                ).fetchone()
            except sqlite3.Error as exc:
                _log.warning("rlm_async.subcall_cache_failed", path=str(self.path), error=str(exc))
                return None
        return None if row is None else str(row[0])

    def _insert(self, key: str, model: str, data: str) -> None:
        with self._lock:
            connection = self._connect()
            if connection is None:
                return
            try:
                connection.execute(
                    "INSERT OR REPLACE INTO subcalls (key, model, created, completion) "
                    "VALUES (?, ?, ?, ?)",
                    (key, model, time.time(), data),
                )
            except sqlite3.Error as exc:
                _log.warning("rlm_async.subcall_cache_failed", path=str(self.path), error=str(exc))


def _pause() -> None:
    time.sleep(0.01)  # in a worker thread (every query runs in one): never on the loop


def _prepare(
    connection: sqlite3.Connection,
    *,
    wait: Callable[[], None] = _pause,
    seconds: float = _BUSY_TIMEOUT,
) -> None:
    """Put a newly opened store in WAL mode and make its table.

    Several processes opening one new file at once (``rlm-async serve --workers N --cache
    PATH``) each switch it from SQLite's rollback journal to WAL, which writes to it; one
    that finds another's switch under way is told ``database is locked`` at once, its busy
    handler not called (a read that wants to become a write could deadlock waiting). So
    the switch is tried again, ``wait()`` between tries, for up to ``seconds``. Once the
    file is in WAL mode, switching it again writes nothing and cannot clash.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            wait()
    connection.execute(_SCHEMA)


class _Flight:
    """A sub-call being sent: duplicates wait for ``done``, then read what it left.

    ``done`` is made by the first duplicate only: most sub-calls have none, and an event
    for each of them was two more objects a sub-call (see ``_key_of``).
    """

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done: anyio.Event | None = None
        self.error: Exception | None = None

    async def wait(self) -> None:
        if self.done is None:
            self.done = anyio.Event()
        await self.done.wait()

    def end(self) -> None:
        if self.done is not None:
            self.done.set()


# An answer kept as a tuple of its fields' values (str, int, float, None): a tuple of
# atoms is untracked by the garbage collector, where a Completion and its Usage are two
# objects each collection walks. A completion tree keeps every answer until it ends; at
# 3,000 sub-calls in one batch, keeping them as models cost ~15 us a sub-call in collections.
_COMPLETION_FIELDS = tuple(name for name in Completion.model_fields if name != "usage")
_USAGE_FIELDS = tuple(Usage.model_fields)
_Kept = tuple[object, ...]


def _keep(completion: Completion) -> _Kept:
    usage = completion.usage
    return (
        *(getattr(completion, name) for name in _COMPLETION_FIELDS),
        *(getattr(usage, name) for name in _USAGE_FIELDS),
    )


def _unkeep(kept: _Kept) -> Completion:
    # model_construct: these values were validated when the completion was first made.
    split = len(_COMPLETION_FIELDS)
    counts: dict[str, Any] = dict(zip(_USAGE_FIELDS, kept[split:], strict=True))
    usage = Usage.model_construct(**counts)
    fields: dict[str, Any] = dict(zip(_COMPLETION_FIELDS, kept[:split], strict=True))
    return Completion.model_construct(usage=usage, **fields)


class SubCallCache:
    """The in-memory layer, single flight, over an optional :class:`SubCallStore`."""

    def __init__(self, store: SubCallStore | None = None) -> None:
        self.store = store
        self._answers: dict[str, _Kept] = {}
        self._flights: dict[str, _Flight] = {}

    async def complete(
        self,
        target: ResolvedModel,
        request: CompletionRequest,
        send: Callable[[], Awaitable[Completion]],
        *,
        begin: Callable[[], object] = lambda: None,
    ) -> tuple[Completion, bool]:
        """The answer to ``request``: ``(completion, True)`` from the cache, or ``(completion,
        False)`` from ``send()``, called only when no identical call has an answer or is in
        flight. ``begin()`` is called when the cache answers, or before waiting for an
        identical call in flight (the sub-call starts then: it is not sent).

        Raises:
            Exception: what ``send()`` raised, here or in the identical call waited for.
        """
        key = _key_now(target, request)
        if key is None:
            key = await anyio.to_thread.run_sync(_key_of, target, request)
        while True:
            kept = self._answers.get(key)
            if kept is not None:
                begin()
                return _unkeep(kept), True
            flight = self._flights.get(key)
            if flight is None:
                break
            begin()
            await flight.wait()
            if flight.error is not None:
                raise flight.error
            # It was cancelled (its cell stopped waiting): this one sends it instead.
        flight = self._flights[key] = _Flight()
        try:
            if self.store is not None:
                stored = await self.store.get(key)
                if stored is not None:
                    self._answers[key] = _keep(stored)
                    begin()
                    return stored, True
            completion = await send()
            self._answers[key] = _keep(completion)
            if self.store is not None:
                await self.store.put(key, target.label, completion)
            return completion, False
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[key]
            flight.end()
