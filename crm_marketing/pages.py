"""Plain Django pages: the hub shell, the home redirect and JSON-or-HTML error pages.

The hub is a React app built by Vite into static/hub/ (frontend/). Django serves one shell page for
/hub/ and every client route under it; the shell reads the Vite manifest for the entry's files, sets
the CSRF cookie and inlines the user's memberships (the same shape as GET /crm/me) so the first page
needs no extra round trip. It reads nothing from the apps.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.csrf import csrf_failure as html_csrf_failure
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found, server_error as html_server_error

from crm_marketing.envelope import error_body
from crm_marketing.serializers import MeSerializer
from crm_marketing.tenancy import choose_membership, memberships_of
from crm_marketing.views import hub_language

API_PREFIXES = ("/crm/", "/webhooks/")
HUB_ENTRY = "index.html"


def home(request):
    return HttpResponseRedirect("/hub/" if request.user.is_authenticated else "/accounts/login/")


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=4)
def _cached_manifest(path: Path, mtime: float) -> dict | None:
    return _read_manifest(path)


def hub_entry_files() -> tuple[list[str], list[str], list[str]] | None:
    """URLs of the hub entry's (scripts, stylesheets, module preloads); None when not built.

    Vite's file names already carry a content hash and its chunks import each other by those names,
    so they are served as they are (STATIC_URL + hub/...), not through the manifest storage's names."""
    path = Path(settings.HUB_BUILD_DIR) / ".vite" / "manifest.json"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    manifest = _cached_manifest(path, mtime)
    entry = (manifest or {}).get(HUB_ENTRY)
    if not entry:
        return None
    css, preloads = list(entry.get("css", [])), []
    for name in entry.get("imports", []):  # the entry's static imports: preloaded, not found one by one
        chunk = manifest.get(name, {})
        css.extend(chunk.get("css", []))
        if chunk.get("file"):
            preloads.append(chunk["file"])
    base = f"{settings.STATIC_URL}hub/"
    return [base + entry["file"]], [base + name for name in dict.fromkeys(css)], [base + name for name in preloads]


def me_payload(request) -> dict:
    """What GET /crm/me answers without X-Account (the client picks an account and sends it)."""
    memberships = memberships_of(request.user)
    return MeSerializer({"user": request.user, "memberships": memberships, "account": choose_membership(memberships, None),
                         "language": hub_language(request)}).data


@require_GET
@login_required
@ensure_csrf_cookie
def hub(request, route: str = ""):
    """The shell of the React hub for /hub/ and every client route under it."""
    files = hub_entry_files()
    context = {
        "scripts": files[0] if files else [],
        "stylesheets": files[1] if files else [],
        "preloads": files[2] if files else [],
        "built": files is not None,
        "bootstrap": {"me": me_payload(request)},
    }
    return render(request, "hub/index.html", context, status=200 if files else 503)


def not_found(request, exception=None):
    if request.path.startswith(API_PREFIXES):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return page_not_found(request, exception)


@csrf_exempt  # it writes nothing: a POST/PATCH to an unknown path is the 404 envelope, not Django's HTML CSRF 403
def api_not_found(request, *args, **kwargs):
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: under /crm/ the envelope's 403 (what the API's session writes answer too),
    elsewhere (admin, sign-in) Django's page."""
    if request.path.startswith(API_PREFIXES):
        return JsonResponse(error_body("csrf_failed", f"CSRF Failed: {reason}"), status=403)
    return html_csrf_failure(request, reason)


def server_error(request):
    if request.path.startswith(API_PREFIXES):
        return JsonResponse(error_body("server_error", "Something went wrong on our side."), status=500)
    return html_server_error(request)
