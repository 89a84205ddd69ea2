"""Fixtures of the browser tests: one headless Chromium per test."""

from __future__ import annotations

import pytest

from tests.app_helpers import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture
def browser():
    """Headless Chromium (Debian's /usr/bin/chromium), closed after the test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
