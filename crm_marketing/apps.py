from django.apps import AppConfig


class CrmMarketingConfig(AppConfig):
    name = "crm_marketing"
    verbose_name = "CRM"
