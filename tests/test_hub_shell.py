"""The hub shell at /hub/: login, CSRF cookie, the built entry's files and the user's memberships."""
from __future__ import annotations

import json
import re

import pytest
from rest_framework.test import APIClient

from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def built_hub(tmp_path, settings):
    """A Vite manifest like `npm run build` writes, in a temporary build folder."""
    (tmp_path / ".vite").mkdir()
    (tmp_path / ".vite" / "manifest.json").write_text(json.dumps({
        "index.html": {"file": "assets/index-abc123.js", "isEntry": True, "css": ["assets/index-def456.css"],
                       "imports": ["_vendor-1.js"]},
        "_vendor-1.js": {"file": "assets/vendor-1.js", "css": ["assets/vendor-1.css"]},
        "src/views/Lazy.tsx": {"file": "assets/Lazy-9.js", "isDynamicEntry": True},
    }))
    settings.HUB_BUILD_DIR = tmp_path
    return tmp_path


def bootstrap_of(html: str) -> dict:
    found = re.search(r'<script id="hub-bootstrap" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


@pytest.mark.parametrize("path", ["/hub/", "/hub/marketing", "/hub/leads/12", "/hub/campaigns/9?time_range=7d"])
def test_every_hub_route_sends_an_anonymous_visitor_to_the_login_page_and_back(path):
    response = APIClient().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/hub/")


@pytest.mark.parametrize("path", ["/hub/", "/hub/marketing", "/hub/hsm", "/hub/leads", "/hub/leads/12", "/hub/campaigns/9"])
def test_alice_gets_the_shell_with_the_built_files_and_a_csrf_cookie_on_every_client_route(built_hub, alice, path):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.get(path)

    html = response.content.decode()
    assert response.status_code == 200
    assert '<script type="module" src="/static/hub/assets/index-abc123.js"></script>' in html
    assert '<link rel="stylesheet" href="/static/hub/assets/index-def456.css">' in html
    assert '<link rel="stylesheet" href="/static/hub/assets/vendor-1.css">' in html
    assert '<link rel="modulepreload" href="/static/hub/assets/vendor-1.js">' in html
    assert "Lazy-9.js" not in html  # a route's chunk loads when the route is visited
    assert response.cookies["csrftoken"].value


def test_the_shell_carries_the_users_memberships_like_crm_me(built_hub, alice, acme, globex):
    make_user("zed", globex)  # another member of globex, not alice's business
    from crm_marketing.models import Membership
    Membership.objects.create(user=alice, account=globex, role="marketing")
    alice.first_name, alice.last_name = "Alice", "Anders"
    alice.save()
    client = APIClient()
    client.force_login(alice)

    me = bootstrap_of(client.get("/hub/marketing").content.decode())["me"]

    assert me == {
        "user": {"id": alice.pk, "username": "alice", "name": "Alice Anders", "email": "alice@example.com", "is_staff": True},
        "memberships": [
            {"account_id": acme.pk, "name": "Acme", "slug": "acme", "role": "ceo", "currency": "USD",
             "timezone": "America/Argentina/Buenos_Aires"},
            {"account_id": globex.pk, "name": "Globex", "slug": "globex", "role": "marketing", "currency": "EUR",
             "timezone": "Europe/Madrid"},
        ],
        "account": None,
        "language": "es",
    }


def test_a_seller_gets_the_shell_too_and_lands_on_leads_from_home(built_hub, bob):
    client = APIClient()
    client.force_login(bob)
    assert client.get("/").headers["Location"] == "/hub/"
    assert client.get("/hub/").status_code == 200
    assert bootstrap_of(client.get("/hub/").content.decode())["me"]["account"]["role"] == "seller"


def test_an_unbuilt_hub_says_how_to_build_it(tmp_path, settings, alice):
    settings.HUB_BUILD_DIR = tmp_path
    client = APIClient()
    client.force_login(alice)

    response = client.get("/hub/")

    assert response.status_code == 503
    assert "npm run build" in response.content.decode()


def test_the_hub_shell_answers_get_only(built_hub, alice):
    client = APIClient()
    client.force_login(alice)
    assert client.post("/hub/marketing").status_code == 405


def test_the_shells_memberships_are_what_crm_me_answers(built_hub, alice, acme):
    client = APIClient()
    client.force_login(alice)

    inlined = bootstrap_of(client.get("/hub/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode())["me"]

    assert inlined == client.get("/crm/me", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").json()["data"]
    assert inlined["language"] == "en"
