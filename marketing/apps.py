from django.apps import AppConfig


class MarketingConfig(AppConfig):
    name = "marketing"
    verbose_name = "Marketing (Meta Ads)"

    def ready(self) -> None:
        from crm_marketing.health import register_check
        from crm_marketing.webhooks import register_handler
        from marketing import handlers, health, signals

        register_handler("leadgen", handlers.handle_leadgen, many=handlers.handle_leadgen_many)
        register_handler("messages", handlers.handle_messages)
        register_check("marketing_syncs", health.sync_backlog)
        register_check("roi_rollup", health.rollup_backlog)
        signals.connect()  # the ROI rollup follows every CRM row and insight
