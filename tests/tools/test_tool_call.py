"""Tool.call: arguments validated from JSON, sync tools in worker threads, async ones
awaited, timeouts, exceptions reduced to a type name and a message, results made JSON."""

from __future__ import annotations

import dataclasses
import datetime
import json
import threading
from typing import Any, Literal

import anyio
import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict

from rlm_async.tools import Tool, ToolError, ToolResult, ToolSet
from rlm_async.tools._function import THREADS_PER_TOOL
from tests.loop_meter import loop_meter
from tests.tools import _plain_annotations


class Customer(BaseModel):
    id: str
    tags: list[str] = []


class Ticket(TypedDict):
    id: int
    status: str


@dataclasses.dataclass
class Window:
    start: int
    end: int


async def search_tickets(customer_id: str, status: str = "open") -> list[dict]:
    """Tickets of one customer."""
    return [{"id": 1, "customer_id": customer_id, "status": status}]


def tag_customer(customer: Customer, tag: str, *, window: Window | None = None) -> Customer:
    return Customer(id=customer.id, tags=[*customer.tags, tag])


def tickets(customer_id: str) -> list[Ticket]:
    return [{"id": 7, "status": "open"}]


def total(*amounts: float, currency: Literal["EUR", "USD"] = "EUR", **labels: str) -> dict:
    return {"total": sum(amounts), "currency": currency, "labels": labels}


async def call(fn: Any, *args: Any, **kwargs: Any) -> ToolResult:
    return await Tool.from_function(fn).call(list(args), kwargs)


async def test_async_and_sync_functions_return_json() -> None:
    result = await call(search_tickets, "c1")
    assert result == ToolResult(ok=True, value=[{"id": 1, "customer_id": "c1", "status": "open"}])
    result = await call(search_tickets, customer_id="c2", status="closed")
    assert result.value == [{"id": 1, "customer_id": "c2", "status": "closed"}]
    assert (await call(tickets, "c1")).value == [{"id": 7, "status": "open"}]


async def test_a_dict_becomes_the_pydantic_model_or_dataclass_of_its_parameter() -> None:
    result = await call(
        tag_customer, {"id": "c1", "tags": ["vip"]}, "late", window={"start": 1, "end": 2}
    )
    assert result.value == {"id": "c1", "tags": ["vip", "late"]}  # the model, as JSON


async def test_variadic_and_keyword_only_parameters_are_validated_too() -> None:
    result = await call(total, 1, 2.5, "3", currency="USD", team="ops")
    assert result.value == {"total": 6.5, "currency": "USD", "labels": {"team": "ops"}}
    result = await call(total, 1, "two", currency="GBP", team=5)
    assert not result.ok and result.error_type == "TypeError"
    assert result.error is not None
    assert "argument 'amounts[1]'" in result.error and "'two'" in result.error
    assert "argument 'currency'" in result.error and "'GBP'" in result.error
    assert "argument 'team'" in result.error


async def test_evaluated_annotations_validate_the_same_way() -> None:
    tool = Tool.from_function(_plain_annotations.lookup)
    result = await tool.call([{"id": "c9"}], {"status": "closed", "limit": 3})
    assert result.value == [{"id": "c9", "status": "closed", "limit": 3}]
    result = await tool.call([{"id": "c9"}], {"limit": 1000})  # Field(le=100)
    assert result.error_type == "TypeError"
    assert result.error is not None and "argument 'limit'" in result.error
    assert "less than or equal to 100" in result.error


async def test_arguments_that_do_not_fit_name_the_parameter() -> None:
    result = await call(search_tickets, 12)
    assert result == ToolResult(
        ok=False,
        error="search_tickets(): argument 'customer_id': Input should be a valid string (got 12)",
        error_type="TypeError",
    )
    result = await call(tag_customer, {"tags": "vip"}, "x")
    assert result.error is not None
    assert "argument 'customer' (at id): Field required" in result.error
    assert "argument 'customer' (at tags): Input should be a valid list" in result.error


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ([], {}, "missing a required argument: 'customer_id'"),
        (["a", "b", "c"], {}, "too many positional arguments"),
        (["a"], {"customer_id": "b"}, "multiple values for argument 'customer_id'"),
        (["a"], {"colour": "red"}, "got an unexpected keyword argument 'colour'"),
    ],
)
async def test_calls_that_do_not_match_the_signature_are_type_errors(
    args: list[Any], kwargs: dict[str, Any], message: str
) -> None:
    result = await Tool.from_function(search_tickets).call(args, kwargs)
    assert result.error_type == "TypeError"
    assert result.error == f"search_tickets(): {message}"


async def test_an_exception_reaches_model_code_as_its_type_and_message_only() -> None:
    class QuotaExceeded(Exception):
        pass

    secret = object()

    def charge(amount: int) -> None:
        local = secret  # a parent object in the failing frame: it must not cross
        raise QuotaExceeded(f"cannot charge {amount}: quota used up ({local is secret})")

    result = await call(charge, 5)
    assert result.model_dump() == {
        "ok": False,
        "value": None,
        "error": "cannot charge 5: quota used up (True)",
        "error_type": "QuotaExceeded",
    }
    assert (await call(raise_it, KeyError("missing"))).error == "'missing'"
    assert (await call(raise_it, ToolError("no such customer"))).model_dump() == {
        "ok": False,
        "value": None,
        "error": "no such customer",
        "error_type": "ToolError",
    }


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def raise_it(exc: Any) -> None:
    raise exc


async def test_an_exception_whose_message_cannot_be_read_is_still_a_result() -> None:
    result = await Tool.from_function(raise_it).call([None], {})  # raise None: TypeError
    assert result.error_type == "TypeError"
    tool = Tool.from_function(lambda: raise_it(_Unprintable()), name="broken")
    result = await tool.call()
    assert result.error_type == "_Unprintable"
    assert result.error == "<_Unprintable with an unprintable message>"


async def test_results_are_made_json_or_refused_with_a_clear_message() -> None:
    class Opaque:
        pass

    def made(kind: str) -> Any:
        return {
            "set": {3},
            "tuple": (1, "a"),
            "model": Customer(id="c1"),
            "dataclass": Window(1, 2),
            "date": datetime.date(2025, 3, 1),
            "object": Opaque(),
            "nested": {"ok": [Opaque()]},
        }[kind]

    tool = Tool.from_function(made)
    expected = {
        "set": [3],
        "tuple": [1, "a"],
        "model": {"id": "c1", "tags": []},
        "dataclass": {"start": 1, "end": 2},
        "date": "2025-03-01",
    }
    for kind, value in expected.items():
        result = await tool.call([kind])
        assert result.value == value
        json.dumps(result.model_dump())
    for kind in ("object", "nested"):
        result = await tool.call([kind])
        assert result.error_type == "TypeError"
        assert result.error is not None
        assert result.error.startswith("made() returned a value of type ")
        assert "cannot cross to the REPL as JSON" in result.error


async def test_a_result_that_does_not_match_its_annotation_is_a_type_error() -> None:
    def count() -> int:
        return "seven"  # type: ignore[return-value]

    result = await call(count)
    assert not result.ok and result.error_type == "TypeError"
    assert result.error == (
        "count() returned a value that does not match its return type int: "
        "Input should be a valid integer, unable to parse string as an integer (got 'seven') "
        "(the tool's fault, not the call's)"
    )

    def rows() -> list[dict[str, int]]:
        return [{"n": 1}, {"n": "two"}]  # type: ignore[dict-item]

    result = await call(rows)
    assert result.error is not None
    assert "return type list[dict[str, int]]: (at 1.n): Input should be a valid integer" in (
        result.error
    )


async def test_a_result_of_another_type_that_fits_its_annotation_crosses_as_it() -> None:
    def as_dict() -> dict[str, Any]:
        return Customer(id="c1")  # type: ignore[return-value]

    def as_int() -> int:
        return "7"  # type: ignore[return-value]

    def as_model() -> Customer:
        return {"id": "c2"}  # type: ignore[return-value]

    assert (await call(as_dict)).value == {"id": "c1", "tags": []}
    assert (await call(as_int)).value == 7
    assert (await call(as_model)).value == {"id": "c2", "tags": []}


async def test_an_async_tool_past_its_timeout_is_a_timeout_error() -> None:
    never = anyio.Event()

    async def wait_forever(x: int) -> int:
        await never.wait()
        return x

    result = await Tool.from_function(wait_forever, timeout=0.05).call([1])
    assert result.model_dump() == {
        "ok": False,
        "value": None,
        "error": "wait_forever() did not finish within its timeout of 0.05 s",
        "error_type": "TimeoutError",
    }
    # No timeout of its own: the caller's default applies.
    result = await Tool.from_function(wait_forever).call([1], default_timeout=0.05)
    assert result.error_type == "TimeoutError"


async def test_a_sync_tool_past_its_timeout_returns_without_waiting_for_its_thread() -> None:
    release = threading.Event()

    def wait_forever(x: int) -> int:
        release.wait(timeout=10)  # bounded: run on the loop by mistake, it fails, not hangs
        return x

    try:
        result = await Tool.from_function(wait_forever, timeout=0.05).call([1])
    finally:
        release.set()  # the abandoned thread ends
    assert result.error_type == "TimeoutError"


async def test_a_timeoutraise_itd_by_the_tool_itself_is_its_own_error() -> None:
    def slow_backend() -> None:
        raise TimeoutError("the backend took too long")

    result = await Tool.from_function(slow_backend, timeout=30).call()
    assert (result.error_type, result.error) == ("TimeoutError", "the backend took too long")


async def test_cancellation_propagates_instead_of_becoming_a_result() -> None:
    never = anyio.Event()

    async def wait_forever() -> None:
        await never.wait()

    tool = Tool.from_function(wait_forever)
    with anyio.move_on_after(0.05) as scope:
        await tool.call()
        pytest.fail("the call returned despite the cancellation")
    assert scope.cancelled_caught


async def test_a_sync_tool_does_not_block_the_event_loop() -> None:
    entered, release = threading.Event(), threading.Event()

    def blocking(key: str) -> bool:
        entered.set()
        # Set by the event loop below: only reachable if this runs in another thread.
        return release.wait(timeout=10)

    tool = Tool.from_function(blocking)
    async with loop_meter() as meter, anyio.create_task_group() as group:
        results: list[ToolResult] = []

        async def run() -> None:
            results.append(await tool.call(["k"]))

        group.start_soon(run)
        await anyio.to_thread.run_sync(entered.wait, 10)
        release.set()
    assert results == [ToolResult(ok=True, value=True)]
    assert meter.longest_stall < 0.5


async def test_concurrent_calls_of_a_sync_tool_run_in_parallel() -> None:
    calls = 8
    barrier = threading.Barrier(calls, timeout=10)  # broken unless all wait at once

    def meet(n: int) -> int:
        barrier.wait()
        return n

    tool = Tool.from_function(meet)
    results: dict[int, ToolResult] = {}

    async def run(n: int) -> None:
        results[n] = await tool.call([n])

    async with anyio.create_task_group() as group:
        for n in range(calls):
            group.start_soon(run, n)
    assert results == {n: ToolResult(ok=True, value=n) for n in range(calls)}


async def test_a_toolset_call_by_name() -> None:
    tools = ToolSet([search_tickets])
    assert (await tools.call("search_tickets", ["c1"])).ok
    result = await tools.call("delete_everything", [], {})
    assert (result.error_type, result.error) == ("NameError", "no tool named 'delete_everything'")


def test_a_result_is_a_small_frozen_json_value() -> None:
    result = ToolResult.success({"a": [1]})
    assert result.model_dump() == {
        "ok": True,
        "value": {"a": [1]},
        "error": None,
        "error_type": None,
    }
    assert ToolResult.model_validate_json(result.model_dump_json()) == result
    assert ToolResult.failure("bad", error_type="ValueError").ok is False
    with pytest.raises(Exception, match="frozen"):
        result.ok = False  # type: ignore[misc]


async def test_threads_left_running_past_a_timeout_keep_their_place_under_the_cap() -> None:
    release = threading.Event()
    changed = threading.Condition()
    running, peak = [0], [0]

    def hang(n: int) -> int:
        with changed:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            release.wait(timeout=30)  # bounded: a broken test ends, it does not hang
            return n
        finally:
            with changed:
                running[0] -= 1
                changed.notify_all()

    tool = Tool.from_function(hang)

    async def calls(count: int, timeout: float) -> list[ToolResult]:
        results: list[ToolResult] = []

        async def one(n: int) -> None:
            results.append(await tool.call([n], default_timeout=timeout))

        async with anyio.create_task_group() as group:
            for n in range(count):
                group.start_soon(one, n)
        return results

    try:
        # Calls that time out leave their threads running: they fill the places.
        for _ in range(10):
            await calls(50, 0.05)
            with changed:
                if running[0] >= THREADS_PER_TOOL:
                    break
        assert peak[0] == THREADS_PER_TOOL
        # With every place taken by such a thread, calls fail at once with a clear error
        # (not after their own timeout, holding one more thread each).
        refused = await calls(20, 5)
        assert peak[0] == THREADS_PER_TOOL
        assert {(r.error_type, r.error) for r in refused} == {
            (
                "RuntimeError",
                f"tool 'hang': {THREADS_PER_TOOL} earlier calls are still running, some past "
                "their timeout (Python cannot stop their threads); call it again once they "
                "have finished",
            )
        }
    finally:
        release.set()
    # The threads, once they end, give their places back.
    with changed:
        assert changed.wait_for(lambda: running[0] == 0, timeout=10)
    assert await tool.call([7], default_timeout=5) == ToolResult(ok=True, value=7)
