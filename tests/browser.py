"""Debian's headless Chromium as the live-page tests drive it (through Playwright)."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# As root in a container: no sandbox, no GPU; no background connections to the outside.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
