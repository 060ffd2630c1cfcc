"""Serve an RLM over HTTP: an OpenAI-compatible endpoint, a native one, and event streams.

Needs the ``server`` extra (``pip install 'rlm-async[server]'``: Starlette, uvicorn,
jsonschema and prometheus-client).

    from rlm_async import RLM
    from rlm_async.server import create_app

    app = create_app(lambda: RLM(model="gpt-5", sub_model="gpt-5-mini", warm_repls=4))
    # uvicorn mymodule:app   -- or the command: rlm-async serve --model gpt-5

Names are imported lazily so that ``rlm_async.cli._serve`` (the argument parser of
``rlm-async serve``) loads without Starlette installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm_async.server._app import create_app
    from rlm_async.server._options import RunOptions
    from rlm_async.server._uvicorn import open_server

__all__ = ["RunOptions", "create_app", "open_server"]

_WHERE = {
    "RunOptions": "rlm_async.server._options",
    "create_app": "rlm_async.server._app",
    "open_server": "rlm_async.server._uvicorn",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'rlm_async.server' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("starlette", "uvicorn", "prometheus_client"):
            from rlm_async._exceptions import ConfigurationError

            raise ConfigurationError(
                "serving needs the 'server' extra: pip install 'rlm-async[server]'"
            ) from exc
        raise


def __dir__() -> list[str]:
    return sorted(__all__)
