"""One redaction rule for trajectories, server replies and provider errors."""

from __future__ import annotations

from rlm_async import trajectory
from rlm_async._redact import REDACTED, scrub_secrets


def test_a_value_too_short_to_be_a_key_is_left_alone() -> None:
    # "x" or "abc" as a local server's key would otherwise redact ordinary words.
    assert scrub_secrets("a box of abc", ["x", "abc"]) == "a box of abc"
    assert scrub_secrets("key wxyz", ["wxyz"]) == f"key {REDACTED}"


def test_key_shaped_text_is_redacted_without_being_named() -> None:
    text = "Incorrect API key provided: sk-proj-abcdefghijklmnop1234"
    assert scrub_secrets(text) == f"Incorrect API key provided: {REDACTED}"


def test_the_trajectory_module_exports_the_same_function() -> None:
    assert trajectory.scrub_secrets is scrub_secrets
