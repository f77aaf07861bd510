"""A stdlib-only fake of the Meta Graph API subset the project uses (see DESIGN.md section 7).

No Django imports here: it runs standalone (`python -m crm_marketing.sandbox`) or in-process in tests.
"""
from .request import GraphFault
from .sandbox import MetaSandbox
from .state import LoggedRequest
from .webhooks import (
    WebhookResponse,
    ctwa_message_payload,
    leadgen_payload,
    plain_message_payload,
    sign,
    status_event,
    statuses_payload,
    template_status_payload,
    user_preferences_payload,
)

__all__ = [
    "GraphFault", "LoggedRequest", "MetaSandbox", "WebhookResponse", "ctwa_message_payload", "leadgen_payload",
    "plain_message_payload", "sign", "status_event", "statuses_payload", "template_status_payload",
    "user_preferences_payload",
]
