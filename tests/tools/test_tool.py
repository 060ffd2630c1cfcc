"""Tool.from_function: what a function becomes (name, signature as source, docstring,
async-ness, JSON schema) and which functions and names are refused."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from pydantic import BaseModel

from rlm_async import ConfigurationError
from rlm_async.tools import RESERVED_NAMES, Tool, ToolSet
from tests.tools import _plain_annotations


async def search_tickets(customer_id: str, status: str = "open") -> list[dict]:
    """Tickets of one customer.

    The second paragraph is for people reading the code, not for the prompt.
    """
    return []


def shapes(a: int, b: str = "x", /, c: float = 1.5, *rest: int, flag: bool, **more: str) -> None:
    """Every kind of parameter."""


def kw_only(*, query: str, top_k: int = 5) -> list[str]:
    return []


class Customer(BaseModel):
    id: str
    tags: list[str] = []


def tag_customer(customer: Customer, tag: str) -> Customer:
    """Add a tag."""
    return customer


def test_the_issue_example_renders_as_its_signature() -> None:
    tool = Tool.from_function(search_tickets)
    assert tool.name == "search_tickets"
    assert tool.is_async
    assert tool.signature == (
        'async def search_tickets(customer_id: str, status: str = "open") -> list[dict]'
    )
    assert tool.params_source == 'customer_id: str, status: str = "open"'
    assert tool.returns == "list[dict]"
    assert tool.doc.startswith("Tickets of one customer.\n\nThe second paragraph")
    assert tool.summary == "Tickets of one customer."
    assert tool.describe() == (
        'async def search_tickets(customer_id: str, status: str = "open") -> list[dict]:\n'
        '    """Tickets of one customer."""'
    )


def test_every_kind_of_parameter_keeps_its_markers() -> None:
    tool = Tool.from_function(shapes)
    assert not tool.is_async
    assert tool.signature == (
        'def shapes(a: int, b: str = "x", /, c: float = 1.5, *rest: int, flag: bool, '
        "**more: str) -> None"
    )
    assert Tool.from_function(kw_only).params_source == "*, query: str, top_k: int = 5"
    # The rendered parameters are Python: they compile.
    compile(f"{tool.signature}: ...", "<stub>", "exec", flags=0x1000000)  # annotations


def test_evaluated_annotations_render_as_source() -> None:
    tool = Tool.from_function(_plain_annotations.lookup)
    assert tool.params_source == (
        "customer: Customer, "
        'status: Status = "open", '  # what model code passes: arguments cross as JSON
        "window: Window | None = None, "
        'fields: Sequence[str] = ["id", "status"], '
        "mode: Literal['fast', 'full'] = \"fast\", "
        "limit: int = 10, "
        "extra: dict[str, Any] | None = None"
    )
    assert tool.returns == "list[dict[str, int | str]]"


def test_a_default_without_a_literal_is_shown_as_ellipsis() -> None:
    sentinel = object()

    def pick(x: Any = sentinel) -> Any:
        return x

    tool = Tool.from_function(pick)
    assert tool.params_source == "x: Any = ..."
    assert tool.stub_spec()["parameters"] == [
        {"name": "x", "kind": "positional_or_keyword", "has_default": True}
    ]


def test_name_description_and_timeout_can_be_given() -> None:
    tool = Tool.from_function(
        lambda q: q, name="echo", description="Say it back.\n\nDetails.", timeout=2
    )
    assert tool.name == "echo"
    assert tool.signature == "def echo(q)"
    assert tool.summary == "Say it back."
    assert tool.timeout == 2.0


def test_callables_that_are_not_plain_functions() -> None:
    class Lookup:
        """Looks things up."""

        async def __call__(self, key: str) -> str:
            return key

    tool = Tool.from_function(Lookup())
    assert (tool.name, tool.is_async, tool.params_source) == ("Lookup", True, "key: str")

    partial = Tool.from_function(functools.partial(search_tickets, status="closed"))
    assert partial.name == "search_tickets"
    assert partial.is_async
    assert partial.params_source == 'customer_id: str, *, status: str = "closed"'
    assert partial.doc.startswith("Tickets of one customer.")

    class Repo:
        def find(self, key: str) -> str:
            """Find one."""
            return key

    method = Tool.from_function(Repo().find)
    assert method.signature == "def find(key: str) -> str"


@pytest.mark.parametrize(
    "name",
    [
        "llm_query",
        "llm_query_batched",
        "rlm_query",
        "FINAL",
        "FINAL_VAR",
        "context",
        "print",
        "len",
        "context_1",
        "answer_12",
        "_helper",
        "class",
        "not a name",
        "",
    ],
)
def test_names_that_would_hide_the_repl_or_cannot_be_called_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="tool name"):
        Tool.from_function(search_tickets, name=name)


def test_every_reserved_name_is_refused() -> None:
    for name in RESERVED_NAMES:
        with pytest.raises(ConfigurationError, match="would hide a name the REPL defines"):
            Tool.from_function(search_tickets, name=name)


def test_a_lambda_needs_a_name() -> None:
    with pytest.raises(ConfigurationError, match="not a Python identifier"):
        Tool.from_function(lambda: None)


def test_hints_that_cannot_be_resolved_are_refused_at_creation() -> None:
    def broken(x: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(ConfigurationError, match="NoSuchType"):
        Tool.from_function(broken)


class Handle:  # an arbitrary class: pydantic has no way to build one from JSON
    pass


def test_types_that_cannot_come_from_json_are_refused_at_creation() -> None:
    def use(handle: Handle) -> None:
        pass

    def give() -> Handle:
        return Handle()

    with pytest.raises(ConfigurationError, match="parameter 'handle'"):
        Tool.from_function(use)
    with pytest.raises(ConfigurationError, match="return type"):
        Tool.from_function(give)


def test_generators_and_non_callables_are_refused() -> None:
    def numbers() -> Any:
        yield 1

    async def stream() -> Any:
        yield 1

    for fn in (numbers, stream):
        with pytest.raises(ConfigurationError, match="generator"):
            Tool.from_function(fn)
    with pytest.raises(ConfigurationError, match="must be a function"):
        Tool.from_function("search")  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True, "5"])
def test_a_timeout_must_be_a_positive_number(timeout: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        Tool.from_function(search_tickets, timeout=timeout)


def test_the_json_schema_names_each_parameter() -> None:
    schema = Tool.from_function(tag_customer).json_schema
    assert schema["type"] == "object"
    assert schema["required"] == ["customer", "tag"]
    assert schema["properties"]["tag"] == {"type": "string"}
    assert schema["properties"]["customer"] == {"$ref": "#/$defs/Customer"}
    assert schema["$defs"]["Customer"]["required"] == ["id"]
    assert schema["additionalProperties"] is False
    json.dumps(schema)  # JSON, as a protocol message or a provider would carry it

    schema = Tool.from_function(shapes).json_schema
    assert schema["properties"]["b"] == {"type": "string", "default": "x"}
    assert schema["properties"]["rest"] == {"type": "array", "items": {"type": "integer"}}
    assert schema["required"] == ["a", "flag"]
    assert schema["additionalProperties"] == {"type": "string"}  # **more: str


def test_stub_specs_give_the_child_what_it_needs() -> None:
    specs = ToolSet([search_tickets, kw_only]).stub_specs()
    assert [spec["name"] for spec in specs] == ["search_tickets", "kw_only"]
    first = specs[0]
    assert first == {
        "name": "search_tickets",
        "params": 'customer_id: str, status: str = "open"',
        "parameters": [
            {"name": "customer_id", "kind": "positional_or_keyword", "has_default": False},
            {"name": "status", "kind": "positional_or_keyword", "has_default": True},
        ],
        "returns": "list[dict]",
        "signature": 'async def search_tickets(customer_id: str, status: str = "open") '
        "-> list[dict]",
        "is_async": True,
        "doc": search_tickets.__doc__ and Tool.from_function(search_tickets).doc,
    }
    json.dumps(specs)  # it crosses to the child as JSON


def test_describe_escapes_quotes_and_keeps_a_wrapped_first_paragraph() -> None:
    def quoted(x: str) -> str:
        """Says \"\"\"x\"\"\" back,
        over two lines.

        Not this.
        """
        return x

    def bare(x: str) -> str:
        return x

    assert Tool.from_function(quoted).describe() == (
        "def quoted(x: str) -> str:\n"
        '    """\n'
        '    Says \\"\\"\\"x\\"\\"\\" back,\n'
        "    over two lines.\n"
        '    """'
    )
    assert Tool.from_function(bare).describe() == "def bare(x: str) -> str: ..."
    # What the prompt shows is Python a model can read as such.
    compile(Tool.from_function(quoted).describe(), "<prompt>", "exec", flags=0x1000000)


def test_a_toolset_refuses_two_tools_of_one_name() -> None:
    with pytest.raises(ConfigurationError, match="two tools are named 'search_tickets'"):
        ToolSet([search_tickets, Tool.from_function(kw_only, name="search_tickets")])


def test_a_toolset_converts_functions_and_keeps_its_order() -> None:
    made = Tool.from_function(kw_only)
    tools = ToolSet([search_tickets, made])
    assert list(tools) == ["search_tickets", "kw_only"]
    assert tools["kw_only"] is made
    assert len(tools) == 2
    assert tools.describe().split("\n\n") == [
        tools["search_tickets"].describe(),
        made.describe(),
    ]
    assert ToolSet().describe() == ""
