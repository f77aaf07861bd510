"""The suite-wide leak guard (tests/leak_guard.py) really catches leaks: a child pytest run over
tests/leak_probes.py, whose probes each leak one secret one way, fails exactly the leaking probes,
names what leaked and where, and never repeats the secret itself."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from crm_marketing.sandbox.state import load_default_fixture
from crm_marketing.settings import DEV_TOKEN_KEY
from tests.test_run_demo import ROOT


def test_the_leak_guard_fails_exactly_the_tests_that_leak_a_secret(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'probes.sqlite3'}"}
    run = subprocess.run([sys.executable, "-m", "pytest", "tests/leak_probes.py", "-p", "no:cacheprovider", "-p", "no:xdist",
                          "-rA", "--show-capture=no", "-o", "addopts=-p tests.environment --strict-markers"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    outcomes = {name: outcome for outcome, name in re.findall(r"^(PASSED|FAILED|ERROR) tests/leak_probes.py::(\w+)", output, re.MULTILINE)}

    assert run.returncode == 1, output
    assert outcomes == {
        "test_probe_prints_a_user_token_the_sandbox_issued": "FAILED",
        "test_probe_logs_the_app_secret": "FAILED",
        "test_probe_writes_an_encryption_key_to_stderr": "FAILED",
        "test_probe_answers_a_page_token_in_a_response_body": "FAILED",
        "test_probe_puts_an_encryption_key_in_a_redirect_header": "FAILED",
        "test_probe_logs_a_user_token_that_the_log_filter_masks": "PASSED",
        "test_probe_leaks_nothing": "PASSED",
    }, output
    assert "a Meta user token of the sandbox (EAA…" in output and "in captured stdout call" in output
    assert "the app secret (san…(14 characters)) in captured stderr call" in output
    assert "a token encryption key (bW9…(44 characters)) in captured stderr call" in output
    assert "a Meta page token of the sandbox (EAA…(26 characters)) in the response to GET /leaky-json -> 200" in output
    assert "a token encryption key (bW9…(44 characters)) in the response to GET /leaky-redirect -> 302" in output
    page_token = load_default_fixture()["pages"][0]["access_token"]
    for secret in (page_token, DEV_TOKEN_KEY, "sandbox-secret"):
        assert secret not in output  # the report names the leak without repeating it
