"""The ``rlm-async`` command: ``demo``, ``run``, ``view`` and ``serve``.

``run`` prints the answer (only the answer) on stdout, so it can be piped; progress, the
trajectory's path and errors go to stderr. Exit codes: 0 done, 1 the demo answered wrong,
2 an error (``rlm-async: error: ...``), 130 interrupted.
"""

from rlm_async.cli._main import main

__all__ = ["main"]
