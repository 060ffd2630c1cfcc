"""The REPL child's own files: standard library only, loaded by path, never imported.

``_child.py`` (the child process) and ``_sandbox.py`` (the kernel layers it applies to
itself) run inside the sandbox, under whichever interpreter the parent names, and must not
import ``rlm_async`` (httpx, pydantic) into the process that runs model code. Keeping them in
a folder of their own makes that boundary visible, and is the one directory the launcher
shows the child read-only.
"""
