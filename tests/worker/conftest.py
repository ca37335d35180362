"""Fixtures shared by the worker tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_upstream import FakeUpstream, serving


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with serving() as fake:
        yield fake
