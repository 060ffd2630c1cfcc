"""When a completion is traced: the global provider once the application set one, never an
import of OpenTelemetry on the application's behalf. Each in a fresh interpreter: the global
provider can be set once per process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip(
    "opentelemetry.sdk", reason='the tracing tests need the extra: pip install "rlm-async[otel]"'
)

ROOT = Path(__file__).parents[2]


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_completion_imports_no_opentelemetry_unless_the_application_did() -> None:
    out = run_python(
        """
        import asyncio, sys
        import rlm_async
        from rlm_async.testing import ScriptedModel

        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

        async def main():
            async with rlm_async.RLM(model=ScriptedModel(["FINAL(1)"])) as rlm:
                await rlm.completion("c", "q")

        asyncio.run(main())
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert out.splitlines() == ["[]", "[]"]


def test_the_global_provider_is_used_once_the_application_set_one() -> None:
    out = run_python(
        """
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import rlm_async
        from rlm_async.testing import ScriptedModel

        async def main():
            async with rlm_async.RLM(model=ScriptedModel(["FINAL(1)"] * 2)) as rlm:
                await rlm.completion("c", "q")  # the API's default provider: not traced
                exporter = InMemorySpanExporter()
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                trace.set_tracer_provider(provider)
                await rlm.completion("c", "q")
            print(sorted(span.name for span in exporter.get_finished_spans()))

        asyncio.run(main())
        """
    )
    assert out == "['chat scripted', 'invoke_agent rlm', 'rlm.turn']"
