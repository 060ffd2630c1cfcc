"""``--no-dotenv``: one definition for ``run``, ``serve``, ``batch`` and ``eval``, and the
provider settings it says."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlm_async.providers._settings import Settings

__all__ = ["add_dotenv_argument", "settings_from_env"]


def add_dotenv_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-dotenv`` to ``parser``."""
    parser.add_argument("--no-dotenv", action="store_true", help="do not read a .env file")


def settings_from_env(args: argparse.Namespace) -> Settings:
    """The provider settings from the environment, and from a ``.env`` file unless
    ``--no-dotenv``."""
    from rlm_async.providers._settings import Settings

    return Settings.from_env(load_dotenv=not args.no_dotenv)
