"""/crm/auth/meta/: the Meta OAuth connection."""
from django.urls import path

from meta_oauth import views

app_name = "meta_oauth"
urlpatterns = [
    path("url", views.MetaAuthUrlView.as_view(), name="url"),
    path("callback", views.meta_callback, name="callback"),
    path("disconnect", views.MetaDisconnectView.as_view(), name="disconnect"),
]
