from django.apps import AppConfig


class MetaOauthConfig(AppConfig):
    name = "meta_oauth"
    verbose_name = "Meta connection"
