"""Every token estimate in the package is the one in ``rlm_async._tokens``."""

from __future__ import annotations

import pytest

from rlm_async import testing
from rlm_async._tokens import estimate_tokens, request_tokens
from rlm_async._types import Message
from rlm_async.providers._base import CompletionRequest


@pytest.mark.parametrize("chars", [0, 1, 3, 4, 5, 7, 8, 9, 1001])
def test_all_estimates_round_the_same_way(chars: int) -> None:
    text = "x" * chars
    request = CompletionRequest(model="m", messages=[Message(role="user", content=text)])
    expected = -(-chars // 4)  # rounded up: a 1-character prompt still costs a token
    assert estimate_tokens(chars) == expected
    assert request_tokens(request) == expected
    assert testing.estimate_tokens(text) == expected

