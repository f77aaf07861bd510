"""GET /crm/marketing/automation-logs and GET /crm/marketing/automation/stats."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from automation.engine.models import EnginePass
from automation.models import MessageSend
from tests.conftest import api_client_for, make_lead, make_user
from tests.fixtures.automation import make_rule, make_template

NOW = timezone.now()


def make_send(rule, lead, *, status="sent", minutes_ago=10, **fields) -> MessageSend:
    at = NOW - dt.timedelta(minutes=minutes_ago)
    step = rule.steps.first()
    return MessageSend.objects.create(
        account=rule.account, rule=rule, step=step, lead=lead, template=step.template, trigger_type=rule.trigger_type,
        trigger_key=f"event:{lead.pk}:{status}", rule_name=rule.name, template_name=step.template.name, status=status,
        due_at=at, created_at=at, **fields)


@pytest.fixture
def log_rows(acme):
    template = make_template(acme)
    welcome = make_rule(acme, template, name="Welcome")
    follow_up = make_rule(acme, template, trigger="lead_status_changed", name="Status follow-up")
    maria, juan = make_lead(acme, first_name="María", last_name="Pérez"), make_lead(acme, first_name="Juan")
    read = make_send(welcome, maria, status="read", minutes_ago=30, sent_at=NOW - dt.timedelta(minutes=29),
                     delivered_at=NOW - dt.timedelta(minutes=28), read_at=NOW - dt.timedelta(minutes=27))
    failed = make_send(follow_up, juan, status="failed", minutes_ago=20, error_code=131026, error_details="Message undeliverable")
    return {"welcome": welcome, "follow_up": follow_up, "maria": maria, "juan": juan, "read": read, "failed": failed}


def iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def test_alice_reads_the_send_log_newest_first_with_each_sends_lead_rule_and_times(alice_api, log_rows):
    response = alice_api.get("/crm/marketing/automation-logs")

    read, failed = log_rows["read"], log_rows["failed"]
    assert response.status_code == 200
    assert response.json()["data"] == {"total": 2, "limit": 50, "offset": 0, "results": [
        {"id": failed.pk, "lead_id": log_rows["juan"].pk, "lead_name": "Juan", "rule_id": log_rows["follow_up"].pk,
         "rule_name": "Status follow-up", "trigger_type": "lead_status_changed", "template_name": "seguimiento_lead_v1",
         "status": "failed", "skip_reason": "", "error_code": 131026, "error_details": "Message undeliverable",
         "created_at": iso(failed.created_at), "sent_at": None, "delivered_at": None, "read_at": None},
        {"id": read.pk, "lead_id": log_rows["maria"].pk, "lead_name": "María Pérez", "rule_id": log_rows["welcome"].pk,
         "rule_name": "Welcome", "trigger_type": "lead_created", "template_name": "seguimiento_lead_v1",
         "status": "read", "skip_reason": "", "error_code": None, "error_details": "",
         "created_at": iso(read.created_at), "sent_at": iso(read.sent_at), "delivered_at": iso(read.delivered_at),
         "read_at": iso(read.read_at)},
    ]}


@pytest.mark.parametrize(("params", "expected"), [
    ({"status": "read"}, ["read"]), ({"trigger_type": "lead_status_changed"}, ["failed"]),
    ({"rule": "welcome"}, ["read"]), ({"lead": "juan"}, ["failed"]), ({"limit": 1, "offset": 1}, ["read"]),
])
def test_the_send_log_filters_by_status_trigger_rule_and_lead_and_pages(alice_api, log_rows, params, expected):
    query = {k: (log_rows[v].pk if k in ("rule", "lead") else v) for k, v in params.items()}

    data = alice_api.get("/crm/marketing/automation-logs", query).json()["data"]

    assert [row["id"] for row in data["results"]] == [log_rows[name].pk for name in expected]


@pytest.mark.parametrize(("params", "field"), [({"status": "lost"}, "status"), ({"trigger_type": "x"}, "trigger_type"),
                                               ({"rule": "abc"}, "rule"), ({"lead": "0"}, "lead"), ({"limit": "500"}, "limit")])
def test_a_bad_send_log_filter_is_a_400_naming_the_field(alice_api, log_rows, params, field):
    response = alice_api.get("/crm/marketing/automation-logs", params)

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_sellers_cannot_read_the_send_log_or_the_stats(bob_api, log_rows):
    assert bob_api.get("/crm/marketing/automation-logs").status_code == 403
    assert bob_api.get("/crm/marketing/automation/stats").status_code == 403


def test_a_marketing_user_reads_them(acme, log_rows):
    client = api_client_for(make_user("mia", acme, "marketing"))
    assert client.get("/crm/marketing/automation-logs").json()["data"]["total"] == 2


def test_the_stats_count_sends_rates_followed_up_leads_and_leads_nobody_contacted(alice_api, acme, log_rows):
    stale = make_lead(acme, first_name="Olvidado")
    make_lead(acme, first_name="Reciente")
    from crm_marketing.models import Lead
    Lead.objects.filter(pk=stale.pk).update(created_at=NOW - dt.timedelta(days=2))
    EnginePass.objects.create(finished_at=timezone.now())

    response = alice_api.get("/crm/marketing/automation/stats?time_range=7d")

    # 2 sends (read, failed); 1 delivered and read; 4 new leads, María got a message (25 %);
    # Olvidado is older than 24 h with no send and no status change.
    assert response.json()["data"] == {"sends": 2, "delivered": 1, "read": 1, "failed": 1, "delivery_rate": 50.0,
                                       "read_rate": 100.0, "leads_followed_up": 25.0, "leads_uncontacted_24h": 1,
                                       "engine": "operational"}


def test_the_engine_is_in_error_when_due_sends_wait_too_long_and_idle_without_recent_passes(alice_api, acme, log_rows):
    assert alice_api.get("/crm/marketing/automation/stats").json()["data"]["engine"] == "idle"

    make_send(log_rows["welcome"], make_lead(acme), status="queued", minutes_ago=6)
    EnginePass.objects.create(finished_at=timezone.now())

    assert alice_api.get("/crm/marketing/automation/stats").json()["data"]["engine"] == "error"


def test_a_bad_time_range_is_a_400(alice_api, log_rows):
    assert alice_api.get("/crm/marketing/automation/stats?time_range=forever").status_code == 400


def test_mallory_sees_none_of_acmes_sends(mallory_api, log_rows):
    assert mallory_api.get("/crm/marketing/automation-logs").json()["data"]["total"] == 0
    assert mallory_api.get("/crm/marketing/automation/stats").json()["data"]["sends"] == 0
