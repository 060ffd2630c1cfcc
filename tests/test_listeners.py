"""One helper fans events out to listeners; one validator checks max_connections."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rlm_async import events as ev
from rlm_async._exceptions import ConfigurationError
from rlm_async.engine._listeners import fan_out
from rlm_async.providers import OpenAIProvider, ProviderRegistry
from rlm_async.providers._transport import build_client


def test_fan_out_calls_each_listener_in_order_and_skips_none() -> None:
    seen: list[str] = []
    event = ev.RunStarted.model_construct()
    emit = fan_out(lambda e: seen.append("a"), None, lambda e: seen.append("b"))
    assert emit is not None
    emit(event)
    assert seen == ["a", "b"]


def test_fan_out_of_one_listener_is_that_listener_and_of_none_is_none() -> None:
    def only(event: ev.Event) -> None:
        pass

    assert fan_out(only, None) is only
    assert fan_out(None, None) is None


def _server_config(max_connections: object) -> object:
    pytest.importorskip("uvicorn")
    from rlm_async.server._uvicorn import server_config

    return server_config(lambda *a: None, max_connections=max_connections)  # type: ignore[arg-type]


MAKERS: list[Callable[[object], object]] = [
    lambda n: build_client(max_connections=n),  # type: ignore[arg-type]
    lambda n: OpenAIProvider(api_key="k", max_connections=n),  # type: ignore[arg-type]
    lambda n: ProviderRegistry(max_connections=n),  # type: ignore[arg-type]
    _server_config,
]


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "8"])
def test_every_max_connections_is_checked_the_same_way(
    make: Callable[[object], object], bad: object
) -> None:
    with pytest.raises(ConfigurationError, match=r"max_connections must be an int ≥ 1"):
        make(bad)
