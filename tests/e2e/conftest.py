"""Browser fixtures: Debian's headless Chromium driven by Playwright against pytest-django's live_server.

Playwright's sync API keeps an asyncio loop running in the test thread, so Django's async-safety
check would refuse every ORM call made after the browser starts (in this test and any later one
in the process). No ORM call here runs inside a coroutine, so the check is switched off.
Chromium comes from `make browsers` (apt's package): Playwright cannot download browsers here.
"""
from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.signals import request_finished, request_started

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling Google services, which on a
# closed network means a flood of refused connections.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


class _ServerRequests:
    """How many requests the live server (a thread of this process) is answering now, from Django's own
    signals: the browser stops tracking a request it cancelled or dropped while the server thread can
    still be inside it."""

    def __init__(self) -> None:
        self.active, self.lock = 0, threading.Lock()

    def started(self, **kwargs) -> None:
        if threading.current_thread() is not threading.main_thread():  # the test client runs in the main thread
            with self.lock:
                self.active += 1

    def finished(self, **kwargs) -> None:
        if threading.current_thread() is not threading.main_thread():
            with self.lock:
                self.active = max(0, self.active - 1)


SERVER_REQUESTS = _ServerRequests()
request_started.connect(SERVER_REQUESTS.started, dispatch_uid="e2e-server-requests-started")
request_finished.connect(SERVER_REQUESTS.finished, dispatch_uid="e2e-server-requests-finished")


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browsers` (installs Debian's chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failed test in teardown."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def page(browser, live_server, request) -> Iterator:
    """A fresh browser context (no cookies) per test, with URLs relative to the live server; a failed
    test leaves a full-page screenshot in tests/e2e/artifacts/<test name>.png."""
    from tests.e2e.hub import screenshot_on_failure

    # es-AR: the hub speaks the browser's language (Accept-Language) until the user picks one.
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800}, locale="es-AR")
    context.set_default_timeout(15_000)
    page = context.new_page()
    in_flight: set = set()
    page.on("request", lambda r: in_flight.add(r))
    page.on("requestfinished", lambda r: in_flight.discard(r))
    page.on("requestfailed", lambda r: in_flight.discard(r))
    yield page
    screenshot_on_failure(request, page, request.node.name)
    let_the_server_finish(context, page, in_flight)
    context.close()


def let_the_server_finish(context, page, in_flight: set, *, bound_ms: int = 5_000) -> None:
    """Stop the page's requests and wait for the ones the live server is still answering (also those the
    browser already gave up on): the test's database flush (TRUNCATE) must not meet a stats read still
    inside its snapshot transaction (the two deadlock), nor a request the closed context left behind."""
    context.route("**/*", lambda route: route.abort())  # the hub's polls stop here, in the browser
    waited = 0
    while (in_flight or SERVER_REQUESTS.active) and waited < bound_ms:
        page.wait_for_timeout(50)
        waited += 50


def sign_in(page, username: str, *, path: str = "/accounts/login/") -> None:
    """Fill the real login form (admin's or ours: both use id_username / id_password)."""
    page.goto(path)
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-" + username)
    with page.expect_navigation():
        page.locator("form [type=submit]").click()


def save_screenshot(page, name: str) -> None:
    """With E2E_SCREENSHOT_DIR set, keep a full-page screenshot to look at; otherwise nothing."""
    directory = os.environ.get("E2E_SCREENSHOT_DIR")
    if directory:
        page.screenshot(path=str(Path(directory) / f"e2e_{name}.png"), full_page=True)
