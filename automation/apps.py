from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation (WhatsApp HSM)"

    def ready(self) -> None:
        from automation import handlers
        from automation.engine import planning
        from crm_marketing.webhooks import register_handler

        planning.subscribe_all()  # CRM events plan sends; a reply ends follow-ups
        register_handler("messages", handlers.handle_statuses)
        register_handler("user_preferences", handlers.handle_user_preferences)
