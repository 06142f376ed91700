"""Shared fixtures for the core tests."""

from __future__ import annotations

import pytest

from flops_fit_core.plugins import reset_host


@pytest.fixture(autouse=True)
def _fresh_plugin_host(monkeypatch):
    """Each test sees freshly loaded plugins (FLOPS_FIT_DISABLE_PLUGINS may differ)."""
    monkeypatch.delenv("FLOPS_FIT_DISABLE_PLUGINS", raising=False)
    reset_host()
    yield
    reset_host()
