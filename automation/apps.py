from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation (WhatsApp HSM)"

    def ready(self) -> None:
        from automation import handlers, health, template_handlers
        from automation.engine import planning
        from crm_marketing.health import register_check
        from crm_marketing.webhooks import register_handler

        planning.subscribe_all()  # CRM events plan sends; a reply ends follow-ups
        register_handler("messages", handlers.handle_statuses, many=handlers.handle_statuses_many)
        register_handler("user_preferences", handlers.handle_user_preferences)
        register_handler("message_template_status_update", template_handlers.handle_template_status_update)
        register_handler("message_template_quality_update", template_handlers.handle_template_quality_update)
        register_handler("template_category_update", template_handlers.handle_template_category_update)
        register_check("automation_sends", health.due_sends)  # /readyz: oldest due send
