from django.urls import path  # noqa: F401

from automation.views import logs

app_name = "automation"
urlpatterns: list = [*logs.urlpatterns]
