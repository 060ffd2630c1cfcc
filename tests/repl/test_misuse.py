"""Calling the REPL wrongly raises the library's own errors, never a bare TypeError/ValueError."""

from __future__ import annotations

from typing import Any, cast

import pytest

from rlm_async import ConfigurationError, ReplOptions, ReplSession
from rlm_async.repl._pool import ReplPool


def test_a_pool_of_something_other_than_repl_options_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="ReplOptions"):
        ReplPool(cast(Any, {"cell_timeout": 1}), size=1)


def test_an_empty_pool_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="size"):
        ReplPool(ReplOptions(), size=0)


async def test_a_cell_that_is_not_a_str_is_a_configuration_error() -> None:
    session = ReplSession("context")
    with pytest.raises(ConfigurationError, match="code must be a str"):
        await session.execute(cast(Any, b"print(1)"))
