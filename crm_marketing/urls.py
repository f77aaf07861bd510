"""Root URLconf: admin, login, the CRM API under /crm/, the apps' APIs, the hub shell, webhooks."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from rest_framework.routers import SimpleRouter

from crm_marketing import health, pages, webhooks
from crm_marketing.api import DocsView, SchemaView
from crm_marketing.ratelimits import login_rate_limited, rate_limited
from crm_marketing.views import LeadViewSet, MeView, OpportunityViewSet, SaleViewSet

router = SimpleRouter()
router.trailing_slash = "/?"  # /crm/leads and /crm/leads/ both work
router.register("leads", LeadViewSet, basename="lead")
router.register("opportunities", OpportunityViewSet, basename="opportunity")
router.register("sales", SaleViewSet, basename="sale")

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/login/", login_rate_limited(admin.site.login)),  # ahead of admin.site.urls, which has it too
    path("admin/", admin.site.urls),
    path("accounts/login/", login_rate_limited(auth_views.LoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The API description is for signed-in users and scripts with a token: 401 JSON for the schema, the
    # login page for the docs.
    path("crm/schema/", rate_limited(SchemaView.as_view()), name="schema"),
    path("crm/docs/", rate_limited(login_required(DocsView.as_view(url_name="schema"))), name="docs"),
    path("crm/marketing/", include("automation.urls")),  # hsm/templates, automation/*: no clash with marketing's paths
    path("crm/marketing/", include("marketing.urls")),
    path("crm/auth/meta/", include("meta_oauth.urls")),
    re_path(r"^crm/me/?$", MeView.as_view(), name="me"),
    path("crm/", include(router.urls)),
    path("webhooks/", include(webhooks.urlpatterns)),
    # Anything else under /crm/ is the JSON 404 of the envelope, with DEBUG on too.
    re_path(r"^crm/", pages.api_not_found),
    path("hub/", pages.hub, name="hub"),
    re_path(r"^hub/(?P<route>.+)$", pages.hub, name="hub-route"),
    path("hub", RedirectView.as_view(url="/hub/")),
    path("", pages.home, name="home"),
]

handler404 = "crm_marketing.pages.not_found"
handler500 = "crm_marketing.pages.server_error"
