"""Developer tasks: ``python -m nox -s tests``, ``lint``, ``typecheck``, ``demo``, ``bench``."""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.error_on_external_run = True
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter running nox (3.11+)


# What the tests need beyond Python, as (command, Debian package): Chromium renders the
# trajectory viewer in a real browser; bubblewrap is the sandbox's namespace layer (the suite
# runs the sandbox tests with it and, forced off, without it).
SYSTEM_PACKAGES = (("chromium", "chromium"), ("bwrap", "bubblewrap"))


def _install_system_packages(session: nox.Session) -> None:
    """Install what the tests need from Debian's packages, or say exactly what is missing."""
    missing = [package for command, package in SYSTEM_PACKAGES if shutil.which(command) is None]
    if not missing:
        return
    packages = " ".join(missing)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.error(
            f"the tests need {packages}: install them (Debian/Ubuntu: "
            f"sudo apt-get install -y {packages}) and run this command again"
        )
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-q", external=True, env=env)
    session.run("apt-get", "install", "-y", "-q", *missing, external=True, env=env)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (no network: providers through respx, models over loopback).

    On a machine without Chromium or bubblewrap it installs them first when it runs as root
    with apt-get, and otherwise stops with the command to run.
    """
    _install_system_packages(session)
    # ray: the batch tests run a local Ray (tests/batch/test_ray.py skips without it).
    session.install("-e", ".[dev,ray]")
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
