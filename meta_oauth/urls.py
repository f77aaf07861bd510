from django.urls import path  # noqa: F401

app_name = "meta_oauth"
urlpatterns: list = []
