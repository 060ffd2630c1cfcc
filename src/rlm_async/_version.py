"""The package version: the one place it is written (hatch reads it for the build, see
``[tool.hatch.version]`` in pyproject.toml). A leaf module, so any module can import it
without importing the package root (which imports the engine)."""

__version__ = "0.1.0"
