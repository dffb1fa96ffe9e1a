"""The operators' page in a real browser (Debian's headless Chromium) against a real supervisor.

The page is driven as an operator drives it: clicks on its buttons, text typed into its fields.
What it shows is read back from the DOM and checked against the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser import start_chromium
from tests.support import SupervisorProcess, wait_for

pytestmark = pytest.mark.system

TOKEN = "s3cret-page-token"
WAIT = 20.0

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {"width": 64, "height": 48, "rate": 20, "noise": 0, "deterministic": True},
}

PIPELINE = """
import logging
import numpy as np

log = logging.getLogger("centroid")

def configure(parameters):
    scale = parameters.get("scale", 1)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    log.info("centroid configured with scale %s", scale)

def process_image(image, pulse_id, timestamp, x_axis, y_axis, parameters, bsdata):
    x_profile = image.sum(axis=0, dtype=np.int64)
    return {"x_center": float((x_profile * x_axis).sum() / x_profile.sum())}
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A Chromium of the test's own (it is gone before the test's leftover check)."""
    driver = start_chromium(tmp_path / "chromium")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def node(
    start_supervisor: Callable[..., SupervisorProcess], write_entry: Callable[..., Path]
) -> Callable[..., SupervisorProcess]:
    """A supervisor with a camera and a pipeline that reads it (created, not started)."""

    def make(token: str | None = None) -> SupervisorProcess:
        write_entry("cam.json", json.dumps(CAMERA))
        write_entry("centroid.py", PIPELINE)
        write_entry("centroid.json", json.dumps({"program": "centroid.py", "input": "cam"}))
        sup = start_supervisor(token=token)
        created = sup.api(
            "POST", "/instances", json={"name": "centroid", "entry": "centroid", "start": False}
        )
        assert created.status_code == 201, created.text
        return sup

    return make


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Wait for ``condition`` (retried on a stale element) with a deadline."""

    def probe(d: WebDriver) -> Any:
        try:
            return condition(d)
        except StaleElementReferenceException:
            return None

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(probe, message=what)


def row(driver: WebDriver, name: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-name="{name}"]')


def cell(driver: WebDriver, name: str, column: str) -> str:
    return row(driver, name).find_element(By.CSS_SELECTOR, f".c-{column}").text


def click_action(driver: WebDriver, name: str, action: str) -> None:
    def enabled(d: WebDriver) -> WebElement | None:
        button = row(d, name).find_element(By.CSS_SELECTOR, f'[data-action="{action}"]')
        return button if button.is_enabled() else None

    until(driver, enabled, f"{action} button of {name} enabled").click()


def open_page(driver: WebDriver, sup: SupervisorProcess) -> None:
    driver.get(sup.url + "/")
    assert driver.current_url == sup.url + "/ui/"
    until(driver, lambda d: row(d, "centroid"), "the instance row")


def console_errors(driver: WebDriver) -> list[str]:
    """What the page logged as errors since the last call (script errors, failed requests)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_an_operator_starts_an_instance_sees_it_run_reads_its_log_and_stops_it(
    browser: WebDriver, node: Callable[..., SupervisorProcess]
) -> None:
    sup = node()
    open_page(browser, sup)
    console_errors(browser)

    # The node header is filled from the API.
    info = sup.api("GET", "/node").json()
    until(browser, lambda d: d.find_element(By.ID, "node-host").text == info["hostname"], "host")
    assert browser.find_element(By.ID, "node-version").text == f"v{info['version']}"
    assert cell(browser, "centroid", "state") == "stopped"

    click_action(browser, "centroid", "start")
    until(browser, lambda d: cell(d, "centroid", "state") == "running", "running")
    # The rate rises: the camera's 20 Hz come through the pipeline.
    until(browser, lambda d: float(cell(d, "centroid", "out")) > 5, "an output rate")
    assert sup.instance("centroid")["stats"]["rate_out"] > 0
    # The camera the pipeline needed was started for it and is listed too.
    until(browser, lambda d: cell(d, "cam", "state") == "running", "the camera row")
    assert float(cell(browser, "centroid", "cpu")) >= 0
    assert "iB" in cell(browser, "centroid", "mem")

    # Its log, in the detail view: the line the program logged when it was configured.
    row(browser, "centroid").find_element(By.CSS_SELECTOR, ".c-name").click()
    until(
        browser,
        lambda d: "centroid configured with scale 1" in d.find_element(By.ID, "logs").text,
        "the configure log line",
    )
    detail = browser.find_element(By.ID, "detail-info").text
    assert str(sup.instance("centroid")["pid"]) in detail

    click_action(browser, "centroid", "stop")
    until(browser, lambda d: cell(d, "centroid", "state") == "stopped", "stopped")
    assert sup.instance("centroid")["state"] == "stopped"
    # The supervisor's own record of the exit reaches the log tail, live.
    until(
        browser,
        lambda d: "run 1 exited with code 0" in d.find_element(By.ID, "logs").text,
        "the exit in the log",
    )
    assert console_errors(browser) == []


def test_with_a_token_the_page_asks_for_it_and_the_audit_log_records_each_action(
    browser: WebDriver, node: Callable[..., SupervisorProcess]
) -> None:
    sup = node(token=TOKEN)
    open_page(browser, sup)
    browser.execute_script("sessionStorage.clear()")

    click_action(browser, "centroid", "start")
    dialog = browser.find_element(By.ID, "token-dialog")
    until(browser, lambda d: dialog.is_displayed(), "the page asks for the token")
    assert "Authorization: Bearer" in dialog.text
    field = browser.find_element(By.ID, "token-input")
    field.clear()
    field.send_keys("not-the-token")
    browser.find_element(By.ID, "token-ok").click()
    until(browser, lambda d: "token is wrong" in d.find_element(By.ID, "token-reason").text, "no")
    assert sup.instance("centroid")["state"] == "stopped"

    field.clear()
    field.send_keys(TOKEN)
    browser.find_element(By.ID, "token-ok").click()
    until(browser, lambda d: cell(d, "centroid", "state") == "running", "running")
    assert browser.find_element(By.ID, "token-button").text == "Token ✓"

    # The next action uses the kept token without asking.
    click_action(browser, "centroid", "stop")
    until(browser, lambda d: cell(d, "centroid", "state") == "stopped", "stopped")
    assert not browser.find_element(By.ID, "token-dialog").is_displayed()

    audit = sup.api("GET", "/audit").json()
    calls = [(r["path"], r["auth"], r["status"]) for r in audit if r["target"] == "centroid"]
    start, stop = "/api/v1/instances/centroid/start", "/api/v1/instances/centroid/stop"
    assert calls[-4:] == [
        (start, "anonymous", 401),
        (start, "anonymous", 401),
        (start, "token", 200),
        (stop, "token", 200),
    ]
    errors = console_errors(browser)
    assert errors, "the refused calls show in the console"
    assert all("401" in e for e in errors), errors


def test_the_config_is_checked_before_it_is_applied_and_a_refusal_keeps_the_old_one(
    browser: WebDriver, node: Callable[..., SupervisorProcess]
) -> None:
    sup = node()
    sup.api("POST", "/instances/centroid/start").raise_for_status()
    wait_for(lambda: sup.instance("centroid")["ready"], what="centroid ready")
    open_page(browser, sup)
    row(browser, "centroid").find_element(By.CSS_SELECTOR, ".c-name").click()
    editor = browser.find_element(By.ID, "config")
    until(browser, lambda d: editor.get_attribute("value").strip(), "the config in the editor")
    apply = browser.find_element(By.ID, "config-apply")
    status = browser.find_element(By.ID, "config-status")

    def type_config(text: str) -> None:
        editor.clear()
        editor.send_keys(text)

    type_config('{"scale": 2,')
    until(browser, lambda d: "not valid JSON" in status.text, "a JSON error")
    assert not apply.is_enabled()
    type_config("[1, 2]")
    until(browser, lambda d: "must be a JSON object" in status.text, "an object error")
    assert not apply.is_enabled()

    # Valid, but the program refuses it: the message is the program's, the config stays.
    type_config('{"scale": -1}')
    until(browser, lambda d: "changes scale" in status.text, "the change listed")
    apply.click()
    until(browser, lambda d: "refused" in status.text, "the refusal")
    assert "scale must be positive, got -1" in status.text
    assert sup.api("GET", "/instances/centroid/config").json().get("scale") in (None, 1)

    type_config('{"scale": 3}')
    until(browser, lambda d: apply.is_enabled(), "apply enabled")
    apply.click()
    until(browser, lambda d: "applied live" in status.text, "applied")
    assert sup.api("GET", "/instances/centroid/config").json()["scale"] == 3
    until(
        browser,
        lambda d: "configured with scale 3" in d.find_element(By.ID, "logs").text,
        "the program's log of the new config",
    )
    errors = console_errors(browser)
    assert all("422" in e for e in errors), errors


def test_the_page_says_so_when_it_loses_the_node(
    browser: WebDriver, node: Callable[..., SupervisorProcess]
) -> None:
    sup = node()
    open_page(browser, sup)
    link = browser.find_element(By.ID, "link")
    until(browser, lambda d: link.text.startswith("live"), "live")
    sup.stop()
    until(browser, lambda d: "no contact" in link.text, "the lost contact shown")
    assert "lost" in link.get_attribute("class")


def test_the_preview_shows_the_latest_frame_of_a_camera(
    browser: WebDriver, node: Callable[..., SupervisorProcess]
) -> None:
    sup = node()
    sup.api("POST", "/instances", json={"name": "cam", "entry": "cam"}).raise_for_status()
    wait_for(lambda: sup.instance("cam")["ready"], what="camera ready")
    open_page(browser, sup)
    until(browser, lambda d: row(d, "cam"), "the camera row").find_element(
        By.CSS_SELECTOR, ".c-name"
    ).click()
    status = browser.find_element(By.ID, "preview-status")
    until(browser, lambda d: status.text.startswith("pulse "), "a preview")
    image = browser.find_element(By.ID, "preview")
    size = until(
        browser,
        lambda d: d.execute_script(
            "const i = arguments[0]; return i.complete && i.naturalWidth ? "
            "[i.naturalWidth, i.naturalHeight] : null",
            image,
        ),
        "the image decoded",
    )
    assert size == [64, 48]  # the camera's frame, narrower than the preview width: not reduced
    assert "48x64" in status.text
    first = int(status.text.split()[1])
    # It keeps refreshing at the chosen rate: a later frame replaces it.
    until(browser, lambda d: int(status.text.split()[1]) > first, "a newer frame")
    assert console_errors(browser) == []


def test_an_operator_creates_an_instance_from_the_registry_and_restarts_it(
    browser: WebDriver, node: Callable[..., SupervisorProcess]
) -> None:
    sup = node()
    open_page(browser, sup)
    entries = browser.find_element(By.ID, "create-entry")
    until(browser, lambda d: "cam" in entries.text.split(), "the registry's entries listed")
    Select(entries).select_by_value("cam")
    browser.find_element(By.ID, "create-name").send_keys("cam2")
    browser.find_element(By.CSS_SELECTOR, "#create-form button[type=submit]").click()
    until(browser, lambda d: cell(d, "cam2", "state") == "running", "the new instance running")
    assert sup.instance("cam2")["entry"] == "cam"
    # Created instances open in the detail view.
    title = browser.find_element(By.ID, "detail-title")
    until(browser, lambda d: title.text == "cam2 · cam", "its detail view")
    wait_for(lambda: sup.instance("cam2")["ready"], what="cam2 ready")
    first_pid = sup.instance("cam2")["pid"]

    click_action(browser, "cam2", "restart")
    until(browser, lambda d: sup.instance("cam2")["run"] == 2, "a second run")
    until(browser, lambda d: cell(d, "cam2", "state") == "running", "running again")
    assert sup.instance("cam2")["pid"] != first_pid
    until(
        browser,
        lambda d: "run 2 started" in d.find_element(By.ID, "logs").text,
        "the restart in the log",
    )

    # A name the API refuses: the page quotes the refusal.
    browser.find_element(By.ID, "create-name").send_keys("cam2")
    browser.find_element(By.CSS_SELECTOR, "#create-form button[type=submit]").click()
    banner = browser.find_element(By.ID, "banner")
    until(browser, lambda d: banner.is_displayed(), "the refusal shown")
    assert "cam2" in banner.text
    assert "exists" in banner.text or "taken" in banner.text
    errors = console_errors(browser)
    assert all("409" in e for e in errors), errors
