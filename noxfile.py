"""Developer tasks: ``python -m nox -s tests``, ``lint``, ``typecheck``, ``demo``, ``bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.error_on_external_run = True
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter running nox (3.11+)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (no network: providers through respx, models over loopback)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over everything."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/."""
    session.install("-e", ".[dev]")
    session.run("mypy", "src")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The needle-in-a-haystack demo (offline demo model unless a provider key is set)."""
    session.install(".")
    session.run("rlm-async", "demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks: figures printed and written to benchmarks/results/."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/run.py", *session.posargs)
