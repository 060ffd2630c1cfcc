"""The REPL child process: runs model-written cells. Standard library only.

Started by the parent (``_start.py``) as ``python -I _child.py --in-fd N --out-fd M
--config PATH``, blank: the context comes later, in a ``load_context`` message. It talks
JSON lines over two dedicated pipes, never over stdin/stdout, so model code that prints,
writes to fd 1 or runs ``os.system`` cannot forge or corrupt the protocol. The parent
validates everything it receives anyway.

Why stdlib only, and why loaded by path: the child must start in tens of milliseconds
under any interpreter the parent uses, and must not import the parent's package (which
pulls in httpx and pydantic) into the process that runs untrusted code.

Why one file of ~700 lines, over the package's ~400: it is started by path as a script, so
every extra module would be one more file read and compiled at each start-up (the cold start
is measured in ``benchmarks/``) and one more path Landlock must let the sandboxed child
read; it is the child's whole program, changed as one piece with ``_protocol.py``.

Messages (one JSON object per line, ``type`` discriminates; see ``_protocol.py``):

parent → child: ``load_context`` (path, format, variable name), ``exec`` (cell id, code),
``interrupt`` (cell id: stop that cell, state kept), ``llm_response`` (request id, results),
``define_tools`` (the tools' stub specs), ``tool_response`` (request id, result), ``shutdown``.
child → parent: ``ready`` (pid, sandbox report), ``context_loaded`` (seconds or error),
``result`` (cell id, stdout, stderr, error, final), ``llm_request`` (request id, cell id,
kind, prompts, model, contexts, response_schema), ``tool_request`` (request id, cell id, tool
name, args, keywords), ``cancel`` (request id abandoned by an interrupted cell), ``fatal``.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

PROTOCOL_VERSION = 5  # the parent's copy: _protocol.py (the child imports nothing of ours)
_CO_COROUTINE = 0x0080  # inspect.CO_COROUTINE, without importing inspect (start-up time)
_TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_MAX_INBOUND_LINE = 256 * 1024 * 1024
# How long an interrupted batch waits for the parent's answer with what finished: the
# parent answers at once (it only stops calls in flight), well within its interrupt grace.
_PARTIAL_WAIT = 1.0


class _Channel:
    """Writes protocol messages to the parent; safe to use from any thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        # ensure_ascii keeps every line valid ASCII, whatever surrogates model code made.
        data = (json.dumps(message) + "\n").encode("ascii")
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]


class _Pending:
    """A sub-call request waiting for the parent's answer (a tiny thread-safe future)."""

    __slots__ = ("_callbacks", "_event", "results")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Any] = []
        self.results: Any = None  # a list of sub-call results, or one tool call's result

    def set(self, results: Any) -> None:
        self.results = results
        self._event.set()
        for callback in self._callbacks:
            callback(results)

    def wait(self) -> Any:
        # Event.wait without a timeout is interruptible by SIGINT on POSIX, which is how
        # the parent interrupts a cell stuck waiting for a sub-call.
        self._event.wait()
        assert self.results is not None
        return self.results

    def wait_for(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds; whether the results came."""
        return self._event.wait(timeout) and self.results is not None

    def add_done_callback(self, callback: Any) -> None:
        self._callbacks.append(callback)
        if self._event.is_set() and self.results is not None:
            callback(self.results)


class _CappedText(io.TextIOBase):
    """A text sink keeping the first and last ``limit // 2`` characters of what is written."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._half = max(limit // 2, 1)
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self._dropped = 0
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            taken = 0
            if self._head_len < self._half:
                take = text[: self._half - self._head_len]
                self._head.append(take)
                self._head_len += len(take)
                taken = len(take)
            if len(text) - taken > self._half:
                # Only the last half can stay: drop the rest without copying it (a
                # 300 MB write must not cost another 300 MB).
                self._dropped += len(text) - taken - self._half + self._tail_len
                self._tail.clear()
                self._tail_len = 0
                rest = text[-self._half :]
            else:
                rest = text[taken:]
            if rest:
                self._tail.append(rest)
                self._tail_len += len(rest)
                while self._tail_len > self._half and self._tail:
                    over = self._tail_len - self._half
                    first = self._tail[0]
                    if len(first) <= over:
                        self._tail.popleft()
                        self._tail_len -= len(first)
                        self._dropped += len(first)
                    else:
                        self._tail[0] = first[over:]
                        self._tail_len -= over
                        self._dropped += over
        return len(text)

    def getvalue(self) -> str:
        with self._lock:
            head = "".join(self._head)
            tail = "".join(self._tail)
            if self._dropped:
                return f"{head}\n[... {self._dropped} characters truncated ...]\n{tail}"
            return head + tail


class _Repl:
    """State of the running REPL: namespace, pending sub-calls, the final answer."""

    def __init__(self, channel: _Channel, config: dict[str, Any]) -> None:
        self.channel = channel
        self.config = config
        self.output_limit = int(config.get("output_limit", 20_000))
        self.answer_limit = int(config.get("max_answer_chars", 1_000_000))
        self.pending: dict[int, _Pending] = {}
        self.pending_lock = threading.Lock()
        self.next_id = 0
        self.current_cell = 0
        self.executing = False
        self.final: str | None = None
        self.interrupt_note: str | None = None  # what an interrupted batch kept, for the error
        self.final_chars: int | None = None  # the answer's length, when it was capped
        self.final_json = False  # the answer is the JSON text of a dict, list or dataclass
        self.inbox: deque[dict[str, Any]] = deque()
        self.inbox_ready = threading.Condition()
        self.runner: Any = None  # asyncio.Runner, created on first use (asyncio is slow to import)
        self.sandbox: Any = None
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self._reserved: set[str] = set()
        # Context file -> its value, until the next cell: a second name for the same file
        # (a session's `context_1`) shares the value rather than holding a second copy.
        self._loaded: dict[str, Any] = {}

    # ---- the names model code sees -------------------------------------------------

    def install_api(self, context: Any) -> None:
        api = {
            "context": context,
            "llm_query": self.llm_query,
            "llm_query_batched": self.llm_query_batched,
            "allm_query": self.allm_query,
            "rlm_query": self.rlm_query,
            "rlm_query_batched": self.rlm_query_batched,
            # The case variants models write (Final('x') was a right answer once lost).
            "FINAL": self.final_answer,
            "Final": self.final_answer,
            "final": self.final_answer,
            "FINAL_VAR": self.final_var,
            "Final_Var": self.final_var,
            "final_var": self.final_var,
            "SHOW_VARS": self.show_vars,
        }
        self.namespace.update(api)
        self._reserved = set(api) - {"context"}
        # The system prompt names these as imported (json already imports re: no cost).
        self.namespace.update({"re": re, "json": json})

    def _submit(
        self,
        kind: str,
        prompts: list[str],
        model: str | None,
        contexts: list[Any] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> tuple[int, _Pending]:
        message: dict[str, Any] = {
            "type": "llm_request",
            "kind": kind,
            "prompts": prompts,
            "model": model,
        }
        if contexts is not None:
            message["contexts"] = contexts
        if schema is not None:
            message["response_schema"] = schema
        return self._request(message)

    def _request(self, message: dict[str, Any]) -> tuple[int, _Pending]:
        """Send a request (a sub-call or a tool call) under a new id; its answer comes to
        the returned ``_Pending`` (``deliver``). One id counter and one table for both."""
        with self.pending_lock:
            self.next_id += 1
            request_id = self.next_id
            pending = _Pending()
            self.pending[request_id] = pending
        message["id"] = request_id
        message["cell"] = self.current_cell
        self.channel.send(message)
        return request_id, pending

    async def _await_pending(self, request_id: int, pending: _Pending) -> Any:
        """Wait for a request's answer without blocking the cell's event loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def _deliver(results: Any) -> None:
            def _set() -> None:
                if not future.done():
                    future.set_result(results)

            loop.call_soon_threadsafe(_set)

        pending.add_done_callback(_deliver)
        try:
            results = await future
        except BaseException:
            self._abandon(request_id)
            raise
        with self.pending_lock:
            self.pending.pop(request_id, None)
        return results

    def _call(
        self,
        kind: str,
        prompts: list[str],
        model: str | None,
        contexts: list[Any] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> list[Any]:
        request_id, pending = self._submit(kind, prompts, model, contexts, schema)
        try:
            results = pending.wait()
        except KeyboardInterrupt:
            if len(prompts) > 1:
                self._keep_finished(request_id, pending, kind, schema is not None)
            self._abandon(request_id)
            raise
        except BaseException:
            # Interrupted while waiting: tell the parent to stop spending on it; a late
            # reply for this id will find nothing pending and be dropped.
            self._abandon(request_id)
            raise
        with self.pending_lock:
            self.pending.pop(request_id, None)
        return [_result_value(r, schema is not None) for r in results]

    def _keep_finished(
        self, request_id: int, pending: _Pending, kind: str, structured: bool = False
    ) -> None:
        """An interrupted batch: get what finished from the parent and keep it.

        The parent, told to stop, answers with the finished answers and an error item for
        each prompt that did not finish; they are kept in ``partial_answers`` and the
        cell's error says so, so the model asks again only for the rest.
        """
        with contextlib.suppress(OSError):
            self.channel.send({"type": "cancel", "id": request_id})
        if not pending.wait_for(_PARTIAL_WAIT):
            return
        results = pending.results or []
        self.namespace["partial_answers"] = [_result_value(r, structured) for r in results]
        done = sum(1 for r in results if not r.get("unfinished"))
        name = "llm_query_batched" if kind == "llm" else "rlm_query_batched"
        self.interrupt_note = (
            f"{name} was still waiting: {done} of {len(results)} answers had arrived. All "
            f"{len(results)} are kept, in prompt order, in the variable `partial_answers` "
            f'("Error: ..." for the {len(results) - done} that did not finish): use them, and '
            "ask again only for the rest, in smaller batches."
        )

    def _abandon(self, request_id: int) -> None:
        with self.pending_lock:
            self.pending.pop(request_id, None)
        with contextlib.suppress(OSError):
            self.channel.send({"type": "cancel", "id": request_id})

    def llm_query(self, prompt: str, model: str | None = None, schema: Any = None) -> Any:
        """Ask a sub-model one question; returns its answer (or an ``Error: ...`` string).

        With ``schema`` (a JSON schema, or a type spec: ``_schema_of``) the answer is the
        parsed JSON value the parent checked against it: a dict or list, not text.
        """
        _check_prompt(prompt, "llm_query")
        checked = _schema_of(schema, "llm_query")
        return self._call("llm", [prompt], _check_model(model), None, checked)[0]

    def llm_query_batched(
        self, prompts: list[str], model: str | None = None, schema: Any = None
    ) -> list[Any]:
        """Ask many questions at once; answered concurrently, returned in order (with
        ``schema``: each answer parsed, as ``llm_query``'s)."""
        prompts = _check_prompts(prompts, "llm_query_batched")
        checked = _schema_of(schema, "llm_query_batched")
        if not prompts:
            return []
        return self._call("llm", prompts, _check_model(model), None, checked)

    async def allm_query(self, prompt: str, model: str | None = None, schema: Any = None) -> Any:
        """``await allm_query(prompt)``: the async form, for ``asyncio.gather`` in a cell."""
        _check_prompt(prompt, "allm_query")
        checked = _schema_of(schema, "allm_query")
        request_id, pending = self._submit("llm", [prompt], _check_model(model), None, checked)
        results = await self._await_pending(request_id, pending)
        return _result_value(results[0], checked is not None)

    # ---- the application's tools ------------------------------------------------------

    def call_tool(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """A sync tool's call: blocks this thread (others may call at the same time)."""
        request_id, pending = self._request(_tool_message(name, args, kwargs))
        try:
            result = pending.wait()
        except BaseException:
            self._abandon(request_id)
            raise
        with self.pending_lock:
            self.pending.pop(request_id, None)
        return _tool_value(result)

    async def acall_tool(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """An async tool's call: awaited, so ``asyncio.gather`` runs several at once."""
        request_id, pending = self._request(_tool_message(name, args, kwargs))
        return _tool_value(await self._await_pending(request_id, pending))

    def define_tools(self, specs: list[dict[str, Any]]) -> None:
        """One function per tool, with the tool's name, signature and docstring."""
        if specs:
            self.namespace["ToolError"] = ToolError
        for spec in specs:
            name = str(spec.get("name", ""))
            if not name.isidentifier():
                continue
            try:
                function = _make_stub(self, spec)
            except Exception as exc:  # a stub that cannot be made says so when called
                function = _broken_stub(name, f"{type(exc).__name__}: {exc}")
            self.namespace[name] = function
            self._reserved.add(name)

    def rlm_query(self, prompt: str, context: Any = None) -> str:
        """Hand a question (and optionally its own context) to a sub-RLM, or a plain sub-call
        at the last recursion level."""
        _check_prompt(prompt, "rlm_query")
        answer: str = self._call("rlm", [prompt], None, [_check_json(context)])[0]
        return answer

    def rlm_query_batched(self, prompts: list[str], contexts: list[Any] | None = None) -> list[str]:
        """Many ``rlm_query`` calls at once; answered concurrently, returned in order."""
        prompts = _check_prompts(prompts, "rlm_query_batched")
        if contexts is None:
            contexts = [None] * len(prompts)
        contexts = list(contexts)
        if len(contexts) != len(prompts):
            raise ValueError(
                f"rlm_query_batched: {len(prompts)} prompts but {len(contexts)} contexts; "
                "pass one context per prompt (or None)"
            )
        if not prompts:
            return []
        return self._call("rlm", prompts, None, [_check_json(c) for c in contexts])

    def final_answer(self, answer: Any) -> None:
        """``FINAL(answer)``: end the run with this answer: a ``str`` as it is, a dict, list
        or dataclass as JSON text (a typed answer's value crosses the pipe as JSON), anything
        else converted to ``str``."""
        self._set_final_value(answer)

    def final_var(self, name: Any) -> None:
        """``FINAL_VAR("name")``: end the run with the value of a variable."""
        if isinstance(name, str) and name.isidentifier():
            if name not in self.namespace:
                raise NameError(
                    f"FINAL_VAR: no variable named {name!r}; assign it in a cell first "
                    f"(e.g. {name} = ...), then call FINAL_VAR({name!r})"
                )
            value = self.namespace[name]
        else:
            value = name  # the model passed the value itself: be forgiving
        self._set_final_value(value)

    def _set_final_value(self, value: Any) -> None:
        if isinstance(value, str):
            self._set_final(value)
            return
        shaped = _json_shaped(value)
        if shaped is None:
            self._set_final(str(value))
            return
        try:
            text = json.dumps(shaped, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            # Still an answer (its str) for a run that wants text; a typed run rejects it
            # and the model reads why here, in the cell's output.
            print(
                f"FINAL: the {type(value).__name__} answer is not JSON-serialisable ({exc}); "
                "it was sent as its str(). Give dicts, lists, str, int, float, bool and None.",
                file=sys.stderr,
            )
            self._set_final(str(value))
            return
        self._set_final(text)
        self.final_json = True

    def _set_final(self, answer: str) -> None:
        # Capped here, before it is sent: FINAL('A' * (300 << 20)) must not become a
        # 300 MB protocol line, event and trajectory entry in the parent.
        if len(answer) > self.answer_limit:
            capped = _CappedText(self.answer_limit)
            capped.write(answer)
            self.final, self.final_chars = capped.getvalue(), len(answer)
        else:
            self.final, self.final_chars = answer, None

    def show_vars(self) -> dict[str, str]:
        """``SHOW_VARS()``: the variables defined so far, with their types and sizes."""
        shown: dict[str, str] = {}
        for key, value in self.namespace.items():
            if key.startswith("_") or key == "__builtins__":
                continue
            if key in self._reserved and callable(value):
                continue  # ours; a model's own `final = 3` is shown
            if type(value).__name__ in ("module", "function", "type"):
                continue
            size = ""
            with contextlib.suppress(TypeError):
                size = f", len={len(value)}"
            shown[key] = f"{type(value).__name__}{size}"
        return shown

    def load_context(self, path: str, fmt: str, name: str = "context") -> dict[str, Any]:
        started = time.perf_counter()
        if not name.isidentifier() or name in self._reserved:  # the parent checks it too
            return {"type": "context_loaded", "error": f"ValueError: bad variable name {name!r}"}
        try:
            if path not in self._loaded:
                self._loaded[path] = read_context_file(path, fmt)
            self.namespace[name] = self._loaded[path]
        except Exception as exc:
            return {"type": "context_loaded", "error": f"{type(exc).__name__}: {exc}"}
        return {"type": "context_loaded", "seconds": time.perf_counter() - started}

    # ---- running cells --------------------------------------------------------------

    def run_cell(self, cell_id: int, code: str) -> dict[str, Any]:
        self.current_cell = cell_id
        self.final = self.final_chars = None
        self.final_json = False
        self.interrupt_note = None
        stdout = _CappedText(self.output_limit)
        stderr = _CappedText(self.output_limit)
        error: str | None = None
        started = time.perf_counter()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = stdout, stderr
        sandbox = self.sandbox
        self.executing = True
        try:
            if sandbox is not None:
                sandbox.arm_cell_cpu_limit(self.config.get("cpu_seconds_per_cell"))
            self._execute(cell_id, code, stdout)
        except SyntaxError as exc:
            error = "".join(traceback.format_exception_only(type(exc), exc))
        except KeyboardInterrupt:
            error = "KeyboardInterrupt: the cell was interrupted (it ran past its time limit)"
            if self.interrupt_note:
                error += f"\n{self.interrupt_note}"
        except SystemExit as exc:
            error = (
                f"SystemExit({exc.code!r}) was ignored: the REPL keeps running; "
                "call FINAL(...) to finish"
            )
        except BaseException as exc:
            error = _format_user_traceback(exc)
            note = sandbox.explain_denial(exc) if sandbox is not None else None
            if note:
                error += f"{note}\n"
        finally:
            self.executing = False
            if sandbox is not None:
                with contextlib.suppress(BaseException):
                    sandbox.disarm_cell_cpu_limit()
            sys.stdout, sys.stderr = saved
        return {
            "type": "result",
            "cell": cell_id,
            "stdout": stdout.getvalue(),
            "stderr": stderr.getvalue(),
            "error": error,
            "final": self.final,
            "final_chars": self.final_chars,
            "final_json": self.final_json,
            "duration": time.perf_counter() - started,
        }

    def _execute(self, cell_id: int, code: str, stdout: _CappedText) -> None:
        filename = f"<cell {cell_id}>"
        tree = ast.parse(code, filename=filename, mode="exec")
        last: ast.expr | None = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body[-1].value  # echoed like a notebook's last expression
            del tree.body[-1]
        if tree.body:
            body = compile(tree, filename, "exec", flags=_TOP_LEVEL_AWAIT)
            self._run_code(body)
        if last is not None:
            expression = ast.Expression(body=last)
            ast.fix_missing_locations(expression)
            value = self._run_code(compile(expression, filename, "eval", flags=_TOP_LEVEL_AWAIT))
            if value is not None:
                stdout.write(repr(value) + "\n")

    def _run_code(self, code: Any) -> Any:
        if code.co_flags & _CO_COROUTINE:
            return self._async_runner().run(eval(code, self.namespace))
        return eval(code, self.namespace)

    def _async_runner(self) -> Any:
        if self.runner is None:
            import asyncio

            self.runner = asyncio.Runner()
        return self.runner

    # ---- the message loop ---------------------------------------------------------

    def deliver(self, message: dict[str, Any]) -> None:
        """Called by the reader thread for every message from the parent."""
        if message.get("type") == "interrupt":
            # A real SIGINT to ourselves (not _thread.interrupt_main) so that blocking
            # calls such as time.sleep are interrupted too. Sent by the parent over the
            # protocol because, under bwrap, the parent's child pid is the wrapper's.
            if self.executing and message.get("cell") == self.current_cell:
                os.kill(os.getpid(), signal.SIGINT)
            return
        if message.get("type") in ("llm_response", "tool_response"):
            with self.pending_lock:
                pending = self.pending.get(message.get("id", -1))
            if pending is not None:  # else: a late reply to an abandoned request, dropped
                if message.get("type") == "tool_response":
                    pending.set(message.get("result") or {})
                else:
                    pending.set(message.get("results") or [])
            return
        with self.inbox_ready:
            self.inbox.append(message)
            self.inbox_ready.notify()

    def next_message(self) -> dict[str, Any]:
        with self.inbox_ready:
            while not self.inbox:
                self.inbox_ready.wait()
            return self.inbox.popleft()

    def serve(self) -> None:
        while True:
            try:
                message = self.next_message()
                kind = message.get("type")
                if kind == "shutdown":
                    return
                if kind == "exec":
                    self._loaded.clear()  # model code may change or drop what was loaded
                    result = self.run_cell(int(message["cell"]), str(message["code"]))
                    self.channel.send(result)
                elif kind == "load_context":
                    loaded = self.load_context(
                        str(message["path"]),
                        str(message["format"]),
                        str(message.get("name") or "context"),
                    )
                    self.channel.send(loaded)
                elif kind == "define_tools":
                    self.define_tools(list(message.get("tools") or []))
            except KeyboardInterrupt:
                # A SIGINT that arrived after the cell finished: nothing to interrupt.
                continue


class ToolError(Exception):
    """A tool's failure, raised in model code with the tool's message. A failure of a type
    that is not a Python built-in is raised as a subclass of this named like it."""


_TOOL_STUB = """
{head} {name}({params}){returns}:
    __rlm_args__ = __rlm_given__(__rlm_locals__())
    return {wait}__rlm_call__({name!r}, *__rlm_args__)
"""


def _make_stub(repl: _Repl, spec: dict[str, Any]) -> Any:
    """Compile a tool's function: its own parameters (annotations postponed: the types
    they name exist only in the parent), a body that sends what it was given."""
    name = str(spec["name"])
    is_async = bool(spec.get("is_async"))
    returns = spec.get("returns")
    source = _TOOL_STUB.format(
        head="async def" if is_async else "def",
        wait="await " if is_async else "",
        name=name,
        params=spec.get("params", ""),
        returns=f" -> {returns}" if returns else "",
    )
    tree = ast.parse("from __future__ import annotations\n" + source, filename=f"<tool {name}>")
    function_node = tree.body[1]
    assert isinstance(function_node, (ast.FunctionDef, ast.AsyncFunctionDef))
    # A default the child cannot rebuild (an object of the parent) stays a marker showing
    # its source: the call leaves it out, and the parent applies the real one.
    markers: dict[str, Any] = {}
    arguments = function_node.args
    for index, node in enumerate([*arguments.defaults, *arguments.kw_defaults]):
        if node is None:
            continue
        try:
            ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            marker = f"__rlm_default_{index}__"
            markers[marker] = _DefaultMarker(ast.unparse(node))
            replacement = ast.copy_location(ast.Name(id=marker, ctx=ast.Load()), node)
            if index < len(arguments.defaults):
                arguments.defaults[index] = replacement
            else:
                arguments.kw_defaults[index - len(arguments.defaults)] = replacement
    parameters = [
        (str(p.get("name")), str(p.get("kind")).upper(), bool(p.get("has_default")))
        for p in spec.get("parameters") or []
    ]
    scope: dict[str, Any] = {
        "__name__": "__rlm_tools__",
        "__rlm_locals__": locals,
        "__rlm_call__": repl.acall_tool if is_async else repl.call_tool,
        **markers,
    }
    exec(compile(tree, f"<tool {name}>", "exec"), scope)
    function = scope[name]
    scope["__rlm_given__"] = _given_arguments(function, parameters)
    function.__doc__ = spec.get("doc") or None
    function.__module__ = "__main__"
    return function


class _DefaultMarker:
    """A default the child does not have; its repr is the default's source."""

    def __init__(self, source: str) -> None:
        self._source = source

    def __repr__(self) -> str:
        return self._source


def _given_arguments(function: Any, parameters: list[tuple[str, str, bool]]) -> Any:
    """What a stub sends: each argument given, by the parameter's kind; a parameter left at
    its default is not sent (the parent applies the real default)."""
    positional = [n for n, k, _ in parameters if k in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    given_defaults = function.__defaults__ or ()
    named = positional[len(positional) - len(given_defaults) :]
    defaults = dict(zip(named, given_defaults, strict=True))
    defaults.update(function.__kwdefaults__ or {})

    def given(values: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        extra = next((values[n] for n, k, _ in parameters if k == "VAR_POSITIONAL"), ())
        for name, kind, has_default in parameters:
            value = values[name]
            unset = has_default and name in defaults and value is defaults[name]
            if kind == "POSITIONAL_ONLY" or (kind == "POSITIONAL_OR_KEYWORD" and extra):
                args.append(value)  # a later positional argument needs this one sent
            elif kind == "VAR_POSITIONAL":
                args.extend(value)
            elif kind == "VAR_KEYWORD":
                kwargs.update(value)
            elif not unset:
                kwargs[name] = value
        # Positional-only ones at their defaults, at the end, are left out too.
        while args and not extra:
            name = positional[len(args) - 1]
            if name in defaults and args[-1] is defaults[name]:
                args.pop()
            else:
                break
        for value in (*args, *kwargs.values()):
            if isinstance(value, _DefaultMarker):
                raise TypeError(f"{function.__name__}: pass a value for each argument you give")
        return args, kwargs

    return given


def _broken_stub(name: str, why: str) -> Any:
    def stub(*args: Any, **kwargs: Any) -> Any:
        raise ToolError(f"the tool {name}() could not be defined in the REPL ({why})")

    stub.__name__ = stub.__qualname__ = name
    return stub


def _tool_message(name: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps([args, kwargs])
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name}(): arguments must be plain JSON values (str, int, float, bool, None, "
            f"list, dict), {exc}"
        ) from None
    return {"type": "tool_request", "name": name, "args": list(args), "keywords": kwargs}


def _tool_value(result: Any) -> Any:
    """The value of a tool call's result, or its error raised as an exception here."""
    if not isinstance(result, dict):
        raise ToolError("the tool call got no answer")
    if result.get("ok"):
        return result.get("value")
    message = str(result.get("error") or "the tool call failed")
    kind = str(result.get("error_type") or "ToolError")
    error_class = getattr(builtins, kind, None)
    if isinstance(error_class, type) and issubclass(error_class, Exception):
        try:
            error = error_class(message)
        except Exception:
            error = ToolError(f"{kind}: {message}")
    elif kind == "ToolError" or not kind.isidentifier():
        error = ToolError(message)
    else:
        error = type(kind, (ToolError,), {"__module__": "builtins"})(message)
    raise error


def _result_text(result: dict[str, Any]) -> str:
    if result.get("ok"):
        return str(result.get("text", ""))
    return f"Error: {result.get('error', 'the sub-call failed')}"


def _result_value(result: dict[str, Any], structured: bool) -> Any:
    """A sub-call's answer for model code: its text, or with a schema the JSON value the
    parent validated (a failure stays an ``Error: ...`` string either way)."""
    text = _result_text(result)
    if not structured or not result.get("ok"):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return f"Error: the answer is not JSON: {text[:200]}"


# A JSON schema's own words: a dict holding one (and no Python type) is a schema as it is.
_SCHEMA_WORDS = frozenset(
    {
        "type", "properties", "items", "prefixItems", "required", "enum", "const", "anyOf",
        "oneOf", "allOf", "not", "$ref", "$defs", "definitions", "$schema",
        "additionalProperties", "patternProperties", "if",
    }
)  # fmt: skip
_JSON_TYPES = {
    str: "string", int: "integer", float: "number", bool: "boolean", dict: "object",
    list: "array", type(None): "null",
}  # fmt: skip
_SPEC_HELP = (
    "pass a JSON schema ({'type': 'object', 'properties': {...}}) or a type spec: str, int, "
    "float, bool, None, dict, list, [spec] or list[spec] (a list of them), {'field': spec} (an "
    "object with exactly these fields), dict[str, spec], spec | None, Literal['a', 'b']"
)


def _schema_of(spec: Any, name: str) -> dict[str, Any] | None:
    """The JSON schema of an ``llm_query(schema=...)`` argument, or ``None`` for none.

    A dict of plain JSON values with a schema keyword is a JSON schema as it is; anything
    else is read as a type spec, the Python model code is likely to write.
    """
    if spec is None:
        return None
    try:
        schema = _spec_schema(spec, 0)
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}(schema=...): {exc}; {_SPEC_HELP}") from None
    return schema


def _spec_schema(spec: Any, depth: int) -> dict[str, Any]:
    import typing  # already loaded (``from typing import Any``): no start-up cost

    if depth > 50:
        raise ValueError("the schema is nested too deeply")
    if spec is None or spec is type(None):
        return {"type": "null"}
    if isinstance(spec, type) and spec in _JSON_TYPES:
        return {"type": _JSON_TYPES[spec]}
    if isinstance(spec, dict):
        if _is_json_schema(spec):
            return dict(spec)
        properties: dict[str, Any] = {}
        for key, value in spec.items():
            if not isinstance(key, str):
                raise ValueError(f"a field name must be a str, got {key!r}")
            properties[key] = _spec_schema(value, depth + 1)
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }
    if isinstance(spec, list) and len(spec) == 1:
        return {"type": "array", "items": _spec_schema(spec[0], depth + 1)}
    origin, args = typing.get_origin(spec), typing.get_args(spec)
    if origin is list and len(args) == 1:
        return {"type": "array", "items": _spec_schema(args[0], depth + 1)}
    if origin is dict and len(args) == 2 and args[0] is str:
        return {"type": "object", "additionalProperties": _spec_schema(args[1], depth + 1)}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is typing.Union or type(spec).__name__ == "UnionType":  # Optional[X], X | None
        return {"anyOf": [_spec_schema(arg, depth + 1) for arg in args]}
    raise ValueError(f"{spec!r} is not a schema")


def _is_json_schema(spec: dict[Any, Any]) -> bool:
    """Whether a dict is a JSON schema (plain JSON values, a schema keyword) rather than a
    type spec (``{"name": str}``); plain JSON without a keyword is neither."""
    try:
        json.dumps(spec)
    except (TypeError, ValueError):
        return False  # holds Python types: a type spec
    if _SCHEMA_WORDS.isdisjoint(spec):
        raise ValueError(f"{spec!r} has no JSON schema keyword (such as 'type' or 'properties')")
    return True


def _check_prompt(prompt: Any, name: str) -> None:
    if not isinstance(prompt, str):
        raise TypeError(
            f"{name}(prompt) takes a str, got {type(prompt).__name__}; "
            "build the prompt text first (e.g. with an f-string or '\\n'.join(...))"
        )


def _check_prompts(prompts: Any, name: str) -> list[str]:
    if isinstance(prompts, str) or not hasattr(prompts, "__iter__"):
        raise TypeError(f"{name}(prompts) takes a list of str, got {type(prompts).__name__}")
    checked: list[str] = []
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(
                f"{name}: prompts[{index}] is a {type(prompt).__name__}, every prompt must be a str"
            )
        checked.append(prompt)
    return checked


def _check_model(model: Any) -> str | None:
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a model name (str) or None, got {type(model).__name__}")
    return model


def _check_json(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"rlm_query: a sub-context must be a str, list or dict of plain JSON values ({exc})"
        ) from None
    return value


def _json_shaped(value: Any) -> Any:
    """A dict, list or tuple as it is, a dataclass or pydantic model as its dict; else
    ``None`` (numbers, bools and other objects are answered as their ``str``)."""
    if isinstance(value, dict | list | tuple):
        return value
    if hasattr(type(value), "__dataclass_fields__"):
        import dataclasses  # only here: start-up time

        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        with contextlib.suppress(Exception):
            return dump(mode="json")
    return None


def _format_user_traceback(exc: BaseException) -> str:
    """A traceback of the model's own code, without the REPL's frames."""
    here = os.path.abspath(__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != here]
    lines = ["Traceback (most recent call last):\n"]
    lines.extend(traceback.format_list(frames))
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines)


def read_context_file(path: str, fmt: str) -> Any:
    """A context file as ``_context.py`` wrote it: text as UTF-8 with lone surrogates kept,
    anything else one JSON document. The parent reads a kept context back with this too
    (``engine/_kept_context.py``), so a resumed run gets what the child loaded."""
    if fmt == "text":
        with open(path, encoding="utf-8", errors="surrogatepass") as handle:
            return handle.read()
    with open(path, "rb") as handle:
        return json.loads(handle.read())


def _load_sandbox(policy: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox.py")
    spec = importlib.util.spec_from_file_location("_rlm_async_sandbox", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the sandbox module from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.apply_sandbox(policy)
    return module, report


def _reader(repl: _Repl, fd: int) -> None:
    stream = os.fdopen(fd, "rb", buffering=1 << 20)
    try:
        while True:
            line = stream.readline(_MAX_INBOUND_LINE)
            if not line:
                break
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                repl.deliver(message)
    except OSError:
        pass
    # The parent closed our input: it is gone or shutting us down. Exit at once, without
    # waiting for a cell that may be stuck (the parent no longer wants its result).
    _end_descendants(repl)
    os._exit(0)


def _end_descendants(repl: _Repl) -> None:
    """Leave no process of ours behind (when subprocesses were allowed at all)."""
    if repl.sandbox is not None:
        with contextlib.suppress(Exception):
            repl.sandbox.end_descendants()


def _parse_args(argv: list[str]) -> tuple[int, int, str]:
    values = dict(zip(argv[1::2], argv[2::2], strict=False))
    return int(values["--in-fd"]), int(values["--out-fd"]), values["--config"]


def main(argv: list[str]) -> int:
    in_fd, out_fd, config_path = _parse_args(argv)
    # Grandchildren (os.system, when allowed) must not inherit the protocol pipes.
    os.set_inheritable(in_fd, False)
    os.set_inheritable(out_fd, False)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    channel = _Channel(out_fd)
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    version = config.get("protocol_version")
    if version != PROTOCOL_VERSION:
        # Before anything else: a parent of another version would misread what follows.
        error = f"the parent speaks protocol version {version}, this child {PROTOCOL_VERSION}"
        channel.send({"type": "fatal", "error": error, "kind": "protocol_version"})
        return 3
    repl = _Repl(channel, config)
    sandbox_report: dict[str, Any] = {}
    try:
        policy = config.get("sandbox")
        if policy:
            repl.sandbox, sandbox_report = _load_sandbox(policy)
    except BaseException as exc:
        # The fatal kinds are an enumeration (FATAL_KINDS in _protocol.py).
        kind = "sandbox" if type(exc).__name__ == "SandboxUnavailable" else "startup"
        channel.send({"type": "fatal", "error": f"{type(exc).__name__}: {exc}", "kind": kind})
        return 3
    # The context arrives later, in a load_context message: a child can be started ahead
    # of time (the warm pool) and handed to whichever completion needs one.
    repl.install_api(None)
    threading.Thread(target=_reader, args=(repl, in_fd), name="rlm-reader", daemon=True).start()
    channel.send(
        {
            "type": "ready",
            "version": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "sandbox": sandbox_report,
        }
    )
    repl.serve()
    _end_descendants(repl)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
