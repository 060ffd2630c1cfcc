"""Several processes opening one new sub-call store at once (``rlm-async serve --workers N
--cache PATH``): each switches the new file to WAL mode, which writes to it; one that
finds another's switch under way fails at once (``database is locked``: SQLite does not
call its busy handler for a read that wants to become a write, as waiting there could
deadlock). The store waits and tries again (before: ``ConfigurationError``, seen in about
one start in three of four processes opening a new file together)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rlm_async.engine._subcall_cache import _prepare


def another_switch_under_way(path: Path) -> sqlite3.Connection:
    """A connection in a write transaction on a new (rollback-journal) SQLite file, as
    another worker switching the same new store to WAL is for a moment."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_opening_a_new_store_while_another_process_switches_it_waits_for_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "subcalls.sqlite3"
    other = another_switch_under_way(path)
    waits: list[int] = []

    def wait() -> None:  # the other process's switch ends while this one waits
        waits.append(1)
        other.execute("COMMIT")

    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    _prepare(connection, wait=wait)
    assert waits == [1]
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("SELECT count(*) FROM subcalls").fetchone() == (0,)
    connection.close()
    other.close()


def test_a_clash_that_outlasts_the_wait_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "subcalls.sqlite3"
    other = another_switch_under_way(path)
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _prepare(connection, wait=lambda: None, seconds=0.0)
    connection.close()
    other.close()
