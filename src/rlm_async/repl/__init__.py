"""The REPL: a persistent, sandboxed child Python process that runs model-written cells."""

from rlm_async.repl._options import ReplOptions
from rlm_async.repl._session import CellResult, ReplSession, SubCallHandler

__all__ = ["CellResult", "ReplOptions", "ReplSession", "SubCallHandler"]
