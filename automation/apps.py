from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation (WhatsApp HSM)"

    def ready(self) -> None:
        from automation import template_handlers
        from crm_marketing.webhooks import register_handler

        register_handler("message_template_status_update", template_handlers.handle_template_status_update)
        register_handler("message_template_quality_update", template_handlers.handle_template_quality_update)
        register_handler("template_category_update", template_handlers.handle_template_category_update)
