"""House rules a newcomer would otherwise learn by breaking them (DESIGN.md section 10)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from crm_marketing.errors import NotFound
from crm_marketing.models import Account
from marketing.stats import campaign_for

ROOT = Path(__file__).resolve().parent.parent
APPS = ("crm_marketing", "marketing", "meta_oauth", "automation")
# The HTTP layer's exceptions: a service raising them would tie it to DRF and skip the one mapping.
HTTP_EXCEPTIONS = {"ValidationError", "NotFound", "Http404", "get_object_or_404", "PermissionDenied", "APIException"}


def service_modules() -> list[Path]:
    """Every services.py, services/ package module, and the read services of marketing.stats and time_ranges."""
    found: list[Path] = []
    for app in APPS:
        found += [p for p in (ROOT / app).rglob("*.py") if p.name == "services.py" or "services" in p.relative_to(ROOT).parts[:-1]]
    found += sorted((ROOT / "marketing" / "stats").glob("*.py")) + [ROOT / "marketing" / "time_ranges.py"]
    return sorted(set(found))


def http_layer_imports(path: Path) -> list[str]:
    imported = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("rest_framework", "django"):
            imported += [f"{node.module}.{alias.name}" for alias in node.names
                         if node.module.startswith("rest_framework") or alias.name in HTTP_EXCEPTIONS]
        elif isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names if alias.name.startswith("rest_framework")]
    return imported


@pytest.mark.parametrize("path", service_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_service_module_raises_domain_errors_not_the_http_layers_exceptions(path):
    assert http_layer_imports(path) == []


def test_the_service_modules_checked_include_every_app_that_has_them():
    checked = {p.relative_to(ROOT).parts[0] for p in service_modules()}
    assert {"crm_marketing", "marketing", "meta_oauth"} <= checked


@pytest.mark.django_db
def test_an_unknown_campaign_is_a_domain_not_found_the_api_answers_as_404(alice_api):
    with pytest.raises(NotFound):
        campaign_for(Account.objects.get(slug="acme"), "120999")
    response = alice_api.get("/crm/marketing/campaigns/120999")

    assert response.status_code == 404
    assert response.json() == {"success": False, "error": {"code": "not_found", "message": "Not found.", "fields": {}}}
