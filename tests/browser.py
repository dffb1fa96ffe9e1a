"""Debian's headless Chromium, driven by selenium through Debian's chromedriver.

Both come from apt (``make browser``, part of ``make test``); selenium is told their paths, so
its driver manager never downloads anything. Chromium's own network traffic (updates, metrics,
DNS prefetch) is switched off, and every request to a host name goes to a closed port on
loopback: the tests' packets stay on 127.0.0.0/8.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

__all__ = ["chromium_paths", "start_chromium"]

_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--dns-prefetch-disable",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--no-first-run",
    "--no-pings",
    "--password-store=basic",
    "--use-mock-keychain",
    # Any request to a name goes to port 9 of loopback (closed); loopback itself is never proxied.
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1400,1000",
)


def chromium_paths() -> tuple[str, str]:
    """Chromium and chromedriver: ``PIPEVISOR_CHROMIUM`` / ``PIPEVISOR_CHROMEDRIVER`` or PATH.

    Raises:
        AssertionError: one of them is missing, naming the command that installs them.
    """
    browser = os.environ.get("PIPEVISOR_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("PIPEVISOR_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        raise AssertionError(
            "the browser tests need Debian's chromium and chromium-driver: run `make browser` "
            "(or apt-get install chromium chromium-driver)"
        )
    return browser, driver


def start_chromium(profile: Path) -> webdriver.Chrome:
    """A headless Chromium with its profile in ``profile``; quit it when done."""
    browser, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver, log_output=str(profile.parent / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options)
