"""Plain Django pages: the home redirect and JSON-or-HTML error pages."""
from __future__ import annotations

from django.http import HttpResponseRedirect, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found, server_error as html_server_error

from crm_marketing.envelope import error_body

API_PREFIXES = ("/crm/", "/webhooks/")


def home(request):
    return HttpResponseRedirect("/hub/marketing" if request.user.is_authenticated else "/accounts/login/")


def not_found(request, exception=None):
    if request.path.startswith(API_PREFIXES):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return page_not_found(request, exception)


@csrf_exempt  # it writes nothing: a POST/PATCH to an unknown path is the 404 envelope, not Django's HTML CSRF 403
def api_not_found(request, *args, **kwargs):
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def server_error(request):
    if request.path.startswith(API_PREFIXES):
        return JsonResponse(error_body("server_error", "Something went wrong on our side."), status=500)
    return html_server_error(request)
