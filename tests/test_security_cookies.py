"""Cookie flags and security headers in production: the settings production builds (DEBUG=false,
tests/test_production.py's environment) answer a real sign-in over HTTPS with Secure, SameSite cookies
(HttpOnly for the session), HSTS and the other headers ``check --deploy`` asks for, and plain HTTP is
redirected to HTTPS. The sign-in runs in a child process: settings are read once per process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_production import boot_database_url, production_env
from tests.test_run_demo import ROOT

# Runs with the production settings: signs a user in through the login form over HTTPS (the Django test
# client: the same middleware, views and settings gunicorn serves) and prints what the browser was told.
SIGN_IN = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
user, _ = get_user_model().objects.get_or_create(username="cookie-check")
user.set_password("cookie-check-pass-2026")
user.save()
browser = Client(enforce_csrf_checks=True, HTTP_HOST="127.0.0.1")
page = browser.get("/accounts/login/", secure=True)
signed_in = browser.post("/accounts/login/", {"username": "cookie-check", "password": "cookie-check-pass-2026",
                                               "csrfmiddlewaretoken": page.cookies["csrftoken"].value},
                         secure=True, HTTP_ORIGIN="https://127.0.0.1")
plain_http = Client(HTTP_HOST="127.0.0.1").get("/accounts/login/")
user.delete()

def cookies(response):
    return {name: {"secure": bool(m["secure"]), "httponly": bool(m["httponly"]), "samesite": m["samesite"]}
            for name, m in response.cookies.items()}

print(json.dumps({
    "login_page": {"status": page.status_code, "cookies": cookies(page), "headers": dict(page.headers)},
    "signed_in": {"status": signed_in.status_code, "cookies": cookies(signed_in), "headers": dict(signed_in.headers)},
    "plain_http": {"status": plain_http.status_code, "location": plain_http.headers.get("Location")},
}))
"""


@pytest.fixture
def production_answers(transactional_db, tmp_path: Path) -> dict:
    env = production_env(tmp_path, "", ALLOWED_HOSTS="127.0.0.1", TRUSTED_PROXY_COUNT="0", LOG_LEVEL="WARNING")
    env["DATABASE_URL"] = boot_database_url(tmp_path, env)
    result = subprocess.run([sys.executable, "-c", SIGN_IN], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "crm_marketing.settings",
                                                                             "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_session_and_csrf_cookies_are_secure_and_same_site_and_the_session_cookie_is_http_only(production_answers):
    csrf = production_answers["login_page"]["cookies"]["csrftoken"]
    session = production_answers["signed_in"]["cookies"]["sessionid"]

    assert production_answers["login_page"]["status"] == 200 and production_answers["signed_in"]["status"] == 302
    assert session == {"secure": True, "httponly": True, "samesite": "Lax"}
    # The hub's script reads the CSRF token from this cookie to send it back in X-CSRFToken: it cannot be
    # HttpOnly (Django's docs: no security gain), but it is Secure and SameSite like the session's.
    assert csrf == {"secure": True, "httponly": False, "samesite": "Lax"}


def test_https_answers_carry_hsts_and_the_headers_check_deploy_asks_for(production_answers):
    headers = production_answers["signed_in"]["headers"]

    assert {name: headers.get(name) for name in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
                                                 "Referrer-Policy", "Cross-Origin-Opener-Policy")} == {
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def test_plain_http_is_redirected_to_https(production_answers):
    assert production_answers["plain_http"] == {"status": 301, "location": "https://127.0.0.1/accounts/login/"}


def test_check_deploy_is_clean_on_the_same_production_settings(tmp_path):
    env = production_env(tmp_path, f"sqlite:///{tmp_path / 'unused.sqlite3'}")

    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
