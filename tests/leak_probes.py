"""Deliberate leaks for tests/test_security_leak_guard.py, which runs this module in a child pytest
(its name does not match test_*.py, so the suite itself never collects it). Each probe leaks one secret
one way; the guard must fail exactly the leaking ones."""
from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.http import HttpResponseRedirect, JsonResponse
from django.urls import path

log = logging.getLogger("crm_marketing.probe")


def leaky_json(request):
    from crm_marketing.sandbox.state import load_default_fixture

    page = load_default_fixture()["pages"][0]
    return JsonResponse({"page": page["id"], "token": page["access_token"]})


def leaky_redirect(request):
    return HttpResponseRedirect(f"/hub/?key={settings.META_TOKEN_KEYS[0]}")


urlpatterns = [path("leaky-json", leaky_json), path("leaky-redirect", leaky_redirect)]


def test_probe_prints_a_user_token_the_sandbox_issued(meta_sandbox):
    print("connected with", meta_sandbox.issue_token("10001"))


def test_probe_logs_the_app_secret(meta_sandbox):
    log.warning("signing webhooks with %s", meta_sandbox.app_secret)


def test_probe_writes_an_encryption_key_to_stderr():
    import sys

    print("keys:", ",".join(settings.META_TOKEN_KEYS), file=sys.stderr)


@pytest.mark.urls("tests.leak_probes")
def test_probe_answers_a_page_token_in_a_response_body(client, meta_sandbox):
    assert client.get("/leaky-json").status_code == 200


@pytest.mark.urls("tests.leak_probes")
def test_probe_puts_an_encryption_key_in_a_redirect_header(client):
    assert client.get("/leaky-redirect").status_code == 302


def test_probe_logs_a_user_token_that_the_log_filter_masks(meta_sandbox):
    """Control: the app's log filter masks Meta tokens, so what is written holds none."""
    log.warning("token %s", meta_sandbox.issue_token("10001"))


def test_probe_leaks_nothing(meta_sandbox, client):
    """Control: a test that uses the sandbox and the app and leaks nothing passes."""
    meta_sandbox.issue_token("10001")
    assert client.get("/healthz").status_code == 200
    print("all good")
