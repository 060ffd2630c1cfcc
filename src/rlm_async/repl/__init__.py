"""The REPL: a persistent, sandboxed child Python process that runs model-written cells."""

from rlm_async.repl._cell_result import CellResult
from rlm_async.repl._cell_run import SubCallHandler
from rlm_async.repl._options import ReplOptions
from rlm_async.repl._session import ReplSession

__all__ = ["CellResult", "ReplOptions", "ReplSession", "SubCallHandler"]
