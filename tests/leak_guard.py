"""The suite-wide leak guard: no secret in any response, log line or captured output of any test.

For every test, after each phase (setup, call, teardown), the guard looks for the secrets of that test
in what the app said and wrote:

- every response the app gave (body and headers, error pages included), recorded by a middleware put
  first in MIDDLEWARE for the test session (the Django test client and the live server both use it);
- the test's captured stdout, stderr and log records (pytest's report sections: what the app's log
  handlers really emitted, after the redaction filter).

The secrets: every token the Meta sandbox issued or holds (user tokens, page tokens), the app secret,
the Fernet keys of META_TOKEN_KEYS and Django's SECRET_KEY, including values a test set for a while
(read when Django announces a setting change). A test whose output holds one fails with the secret's
kind and where it was seen (masked: the report never repeats the secret).

tests/test_security_leak_guard.py proves it catches leaks, in a child pytest run over tests/leak_probes.py.
What it cannot see: output of child processes a test starts (it has its own pipes) and of management
commands a test gives its own stdout buffer.
"""
from __future__ import annotations

import re
import threading
from typing import Iterable

import pytest

SECRET_SETTINGS = ("META_APP_SECRET", "META_TOKEN_KEYS", "SECRET_KEY")
RECORDER = "tests.leak_guard.ResponseRecorder"
_lock = threading.Lock()
_responses: list[str] = []
_set_during_test: dict[str, str] = {}
_sandboxes: list = []


class ResponseRecorder:
    """Outermost middleware of the test session: keeps what every response said (not streamed files)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        headers = "\n".join(f"{name}: {value}" for name, value in response.items())
        cookies = "\n".join(str(morsel) for morsel in response.cookies.values())
        body = "" if getattr(response, "streaming", False) else response.content.decode("utf-8", "replace")
        with _lock:
            _responses.append(f"{request.method} {request.path} -> {response.status_code}\n{headers}\n{cookies}\n{body}")
        return response


def watch_sandbox(sandbox) -> None:
    """Count this sandbox's tokens and app secret among the secrets (the session fixture calls it)."""
    if sandbox not in _sandboxes:
        _sandboxes.append(sandbox)


def _remember_changed_setting(setting: str, value, enter: bool, **kwargs) -> None:
    if enter and setting in SECRET_SETTINGS:
        for label, secret in _setting_secrets(setting, value):
            _set_during_test[secret] = label


def _setting_secrets(name: str, value) -> Iterable[tuple[str, str]]:
    values = value if isinstance(value, (list, tuple)) else [value]
    label = {"META_APP_SECRET": "the app secret", "META_TOKEN_KEYS": "a token encryption key", "SECRET_KEY": "Django's SECRET_KEY"}[name]
    return [(label, str(v)) for v in values if v and len(str(v)) >= 8]


def secrets_of_this_test(item) -> dict[str, str]:
    """{secret: what it is} for the test now running."""
    from django.conf import settings

    from crm_marketing.sandbox import MetaSandbox

    found = dict(_set_during_test)
    for name in SECRET_SETTINGS:
        found.update({secret: label for label, secret in _setting_secrets(name, getattr(settings, name, None))})
    sandboxes = list(_sandboxes) + [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, MetaSandbox)]
    for sandbox in sandboxes:
        state = sandbox.state
        with state.lock:
            found.update({token: "a Meta user token of the sandbox" for token in state.tokens})
            found.update({token: "a Meta page token of the sandbox" for token in getattr(state, "page_tokens", {})})
        found[sandbox.app_secret] = "the app secret"
    return {secret: label for secret, label in found.items() if len(secret) >= 8}


def masked(secret: str) -> str:
    return f"{secret[:3]}…({len(secret)} characters)"


def leaks_in(haystacks: dict[str, str], secrets: dict[str, str]) -> list[str]:
    if not secrets:
        return []
    pattern = re.compile("|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True)))
    found = []
    for where, text in haystacks.items():
        for secret in dict.fromkeys(m.group(0) for m in pattern.finditer(text)):
            found.append(f"{secrets[secret]} ({masked(secret)}) in {where}")
    return found


# -- pytest wiring (imported by tests/conftest.py) -----------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _leak_guard_recorder():
    """Puts the recorder first in MIDDLEWARE and listens for secret settings set during a test."""
    from django.conf import settings
    from django.test.signals import setting_changed

    if RECORDER not in settings.MIDDLEWARE:
        settings.MIDDLEWARE = [RECORDER, *settings.MIDDLEWARE]
    setting_changed.connect(_remember_changed_setting, dispatch_uid="tests.leak_guard")
    yield
    setting_changed.disconnect(dispatch_uid="tests.leak_guard")


def pytest_runtest_setup(item) -> None:
    with _lock:
        _responses.clear()
    _set_during_test.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if getattr(item, "_leak_guard_failed", False):
        return report
    with _lock:
        responses = list(_responses)
    haystacks = {f"the response to {r.splitlines()[0]}": r for r in responses}
    haystacks.update({section.lower(): text for section, text in report.sections})
    found = leaks_in(haystacks, secrets_of_this_test(item))
    if found:
        item._leak_guard_failed = True
        report.outcome = "failed"
        report.longrepr = "leak guard: a secret appeared in what the app said or wrote:\n  " + "\n  ".join(found)
    return report
