"""Fixtures for the publishing tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import SAMPLE_RECORD, UdpReceiver


@pytest.fixture
def record() -> dict[str, Any]:
    """A fresh copy of the sample record (tests may modify it)."""
    return copy.deepcopy(SAMPLE_RECORD)


@pytest.fixture
def receiver() -> Iterator[UdpReceiver]:
    """A real UDP receiver on 127.0.0.1, closed after the test."""
    r = UdpReceiver()
    yield r
    r.close()
