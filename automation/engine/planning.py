"""Planning: a CRM event (or the no_reply scan) becomes one queued ``MessageSend`` per matching rule step;
a reply or a won opportunity ends pending follow-ups.

Rows are created under the unique (rule, step, lead, trigger_key) with ``ignore_conflicts``, so the
same event delivered twice plans nothing new. ``due_at`` is the event time plus the step's delay,
moved out of the rule's quiet hours in the account's local wall time (zoneinfo: right across DST).
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Exists, Min, OuterRef, Q
from django.utils import timezone

from automation.models import AutomationRule, MessageSend, TriggerType
from crm_marketing import events
from crm_marketing.models import Account, Lead, Opportunity

EVENT_TRIGGERS = {
    events.LEAD_CREATED: TriggerType.LEAD_CREATED,
    events.LEAD_STATUS_CHANGED: TriggerType.LEAD_STATUS_CHANGED,
    events.OPPORTUNITY_CREATED: TriggerType.OPPORTUNITY_CREATED,
    events.OPPORTUNITY_STAGE_CHANGED: TriggerType.OPPORTUNITY_STAGE_CHANGED,
    events.OPPORTUNITY_WON: TriggerType.OPPORTUNITY_WON,
}
OPPORTUNITY_TRIGGERS = (TriggerType.OPPORTUNITY_CREATED, TriggerType.OPPORTUNITY_STAGE_CHANGED, TriggerType.OPPORTUNITY_WON)
# Sends due within this long of planning get a send pass queued at once (the welcome "now").
SEND_NOW_WINDOW = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class PlanResult:
    created: int
    due_now: int


def account_zone(account: Account) -> ZoneInfo:
    try:
        return ZoneInfo(account.timezone or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def in_quiet_hours(moment: dt.datetime, start: dt.time | None, end: dt.time | None, zone: ZoneInfo) -> bool:
    if start is None or end is None or start == end:
        return False
    local = moment.astimezone(zone).time()
    return start <= local < end if start < end else (local >= start or local < end)


def out_of_quiet_hours(moment: dt.datetime, start: dt.time | None, end: dt.time | None, zone: ZoneInfo) -> dt.datetime:
    """``moment`` itself, or the end of the quiet hours it falls in, computed in local wall time."""
    if not in_quiet_hours(moment, start, end, zone):
        return moment
    local = moment.astimezone(zone)
    day = local.date()
    if start > end and local.time() >= start:  # overnight window, evening part: ends tomorrow morning
        day += dt.timedelta(days=1)
    # A wall time inside a spring-forward gap resolves to the instant just after it (fold=0).
    return dt.datetime.combine(day, end, tzinfo=zone).astimezone(dt.timezone.utc)


def conditions_match(rule: AutomationRule, lead: Lead, opportunity: Opportunity | None) -> bool:
    conditions = rule.conditions or {}

    def allows(name: str, value: str) -> bool:
        wanted = [str(v) for v in conditions.get(name) or []]
        return not wanted or value in wanted

    if not (allows("lead_sources", lead.lead_source) and allows("lead_statuses", lead.status)
            and allows("campaign_ids", lead.meta_campaign_id)):
        return False
    if conditions.get("stages"):
        return opportunity is not None and allows("stages", opportunity.stage)
    return True


def trigger_key_for(event: events.DomainEvent) -> str:
    if event.id is not None:
        return f"event:{event.id}"
    payload = event.payload
    if "opportunity_id" in payload:
        subject = f"opportunity:{payload['opportunity_id']}"
    else:
        subject = f"lead:{payload.get('lead_id')}"
    suffix = f":{payload.get('new')}" if "new" in payload else ""
    return f"{event.name}:{subject}{suffix}"[:120]


def plan_for_event(event: events.DomainEvent, *, at: dt.datetime | None = None) -> PlanResult:
    """The sends an event causes (idempotent: the same event planned twice creates nothing new)."""
    trigger = EVENT_TRIGGERS.get(event.name)
    if trigger is None:
        return PlanResult(0, 0)
    subject = _subjects([event]).get(event.id)
    if subject is None:
        return PlanResult(0, 0)
    lead, opportunity = subject
    return plan_sends(lead, trigger, trigger_key_for(event), opportunity=opportunity, at=at or timezone.now())


def plan_for_events(batch: list[events.DomainEvent], *, at: dt.datetime | None = None) -> None:
    """The batch form of ``event_subscriber`` (the event drain's): the same sends as ``plan_for_event`` on each,
    from one read of the accounts' active rules; events no rule listens to cost nothing more, and the rest
    are planned from one read of their leads and opportunities, one re-entry check and one insert."""
    at = at or timezone.now()
    wanted = [(event, EVENT_TRIGGERS[event.name]) for event in batch if event.name in EVENT_TRIGGERS]
    if not wanted:
        return
    scope = Q()
    for account_id, trigger in {(event.account_id, trigger) for event, trigger in wanted}:
        scope |= Q(account_id=account_id, trigger_type=trigger)
    rules_of: dict[tuple[int, str], list[AutomationRule]] = {}
    for rule in AutomationRule.objects.filter(scope, is_active=True).order_by("pk").prefetch_related("steps__template"):
        rules_of.setdefault((rule.account_id, rule.trigger_type), []).append(rule)
    wanted = [(event, trigger) for event, trigger in wanted if (event.account_id, trigger) in rules_of]
    subjects = _subjects([event for event, _ in wanted]) if wanted else {}
    planned = [(subjects[event.id], trigger, trigger_key_for(event), rules_of[(event.account_id, trigger)])
               for event, trigger in wanted if event.id in subjects]
    if not planned:
        return
    keys_of: dict[tuple[int, int], set[str]] = defaultdict(set)  # (rule, lead): the trigger keys it entered with
    for rule_id, lead_id, key in MessageSend.objects.filter(
            rule__in={rule for *_, rules in planned for rule in rules if not rule.allow_reentry},
            lead__in={lead for (lead, _), *_ in planned}).values_list("rule_id", "lead_id", "trigger_key"):
        keys_of[(rule_id, lead_id)].add(key)

    def entered(rule: AutomationRule, lead: Lead, key: str) -> bool:
        keys = keys_of[(rule.pk, lead.pk)]
        if keys - {key}:
            return True
        if rule.steps.all():  # an earlier event of this batch enters the rule as a later one would see it
            keys.add(key)
        return False

    rows = [row for (lead, opportunity), trigger, key, rules in planned
            for row in _rows(lead, trigger, key, opportunity=opportunity, at=at, rules=rules, entered=entered)]
    if rows:
        MessageSend.objects.bulk_create(rows, ignore_conflicts=True)
        if any(row.due_at <= at + SEND_NOW_WINDOW for row in rows):
            transaction.on_commit(queue_send_pass, robust=True)  # the pass finds nothing if every row existed


def _subjects(batch: list[events.DomainEvent]) -> dict[int | None, tuple[Lead, Opportunity | None]]:
    """Each event's lead (with its account) and opportunity, read in two queries; events whose rows are gone
    or belong to another account are left out."""
    opportunity_ids = {event.payload["opportunity_id"] for event in batch if "opportunity_id" in event.payload}
    opportunities = {o.pk: o for o in Opportunity.objects.filter(pk__in=opportunity_ids)} if opportunity_ids else {}
    wanted: dict[int | None, tuple[int | None, Opportunity | None]] = {}
    for event in batch:
        opportunity = None
        if "opportunity_id" in event.payload:
            opportunity = opportunities.get(event.payload["opportunity_id"])
            if opportunity is None or opportunity.account_id != event.account_id:
                continue
        wanted[event.id] = (event.payload.get("lead_id") or (opportunity.lead_id if opportunity else None), opportunity)
    leads = Lead.objects.select_related("account").in_bulk([lead_id for lead_id, _ in wanted.values() if lead_id])
    by_event = {event.id: event for event in batch}
    return {event_id: (leads[lead_id], opportunity) for event_id, (lead_id, opportunity) in wanted.items()
            if lead_id in leads and leads[lead_id].account_id == by_event[event_id].account_id}


def plan_sends(lead: Lead, trigger: str, trigger_key: str, *, opportunity: Opportunity | None = None,
               at: dt.datetime, rules: list[AutomationRule] | None = None) -> PlanResult:
    if rules is None:
        rules = list(AutomationRule.objects.filter(account=lead.account, trigger_type=trigger, is_active=True)
                     .prefetch_related("steps__template"))

    def entered(rule: AutomationRule, lead: Lead, key: str) -> bool:
        return MessageSend.objects.filter(rule=rule, lead=lead).exclude(trigger_key=key).exists()

    rows = _rows(lead, trigger, trigger_key, opportunity=opportunity, at=at, rules=rules, entered=entered)
    if not rows:
        return PlanResult(0, 0)
    before = MessageSend.objects.filter(lead=lead, trigger_key=trigger_key).count()
    MessageSend.objects.bulk_create(rows, ignore_conflicts=True)
    created = MessageSend.objects.filter(lead=lead, trigger_key=trigger_key).count() - before
    due_now = sum(1 for row in rows if row.due_at <= at + SEND_NOW_WINDOW) if created else 0
    if due_now:
        transaction.on_commit(queue_send_pass, robust=True)
    return PlanResult(created, due_now)


def _rows(lead: Lead, trigger: str, trigger_key: str, *, opportunity: Opportunity | None, at: dt.datetime,
          rules: list[AutomationRule], entered: Callable[[AutomationRule, Lead, str], bool]) -> list[MessageSend]:
    """One unsaved send per step of each rule whose conditions the lead meets (``entered``: the lead already
    went through a rule that does not allow re-entry, for another trigger)."""
    account = lead.account
    zone = account_zone(account)
    rows: list[MessageSend] = []
    for rule in rules:
        if not conditions_match(rule, lead, opportunity):
            continue
        if not rule.allow_reentry and entered(rule, lead, trigger_key):
            continue
        for step in rule.steps.all():
            due = out_of_quiet_hours(at + dt.timedelta(minutes=step.delay_minutes), rule.quiet_hours_start,
                                     rule.quiet_hours_end, zone)
            rows.append(MessageSend(
                account=account, rule=rule, step=step, lead=lead, template=step.template, trigger_type=trigger,
                trigger_key=trigger_key, rule_name=rule.name[:200], template_name=step.template.name[:512],
                due_at=due, created_at=at))
    return rows


def queue_send_pass() -> None:
    from django_q.tasks import async_task

    async_task("automation.tasks.run_send_pass", task_name="automation-send-pass")


# -- no_reply ---------------------------------------------------------------------------------------------
ANSWERED_STATUSES = (MessageSend.Status.SENT, MessageSend.Status.DELIVERED, MessageSend.Status.READ)


def plan_no_reply(account: Account, *, now: dt.datetime | None = None, limit: int = 2000) -> int:
    """Leads whose first automatic message went out ``no_reply_hours`` ago without an answer since."""
    now = now or timezone.now()
    created = 0
    rules = AutomationRule.objects.filter(account=account, trigger_type=TriggerType.NO_REPLY, is_active=True) \
        .prefetch_related("steps__template")
    for rule in rules:
        cutoff = now - dt.timedelta(hours=rule.no_reply_hours or 24)
        first_sends = (MessageSend.objects.filter(account=account, status__in=ANSWERED_STATUSES, sent_at__isnull=False)
                       .exclude(rule=rule).values("lead_id").annotate(first_id=Min("id"), first_sent_at=Min("sent_at"))
                       .filter(first_sent_at__lte=cutoff))
        already = MessageSend.objects.filter(rule=rule, lead_id=OuterRef("pk"))
        leads = (Lead.objects.select_related("account").filter(account=account, opted_out_at__isnull=True)
                 .filter(pk__in=first_sends.values("lead_id")).annotate(entered=Exists(already)).filter(entered=False))
        firsts = {row["lead_id"]: row for row in first_sends.filter(lead_id__in=leads.values("pk"))}
        for lead in leads[:limit]:
            first = firsts.get(lead.pk)
            if first is None or (lead.last_inbound_at and lead.last_inbound_at >= first["first_sent_at"]):
                continue
            key = f"no_reply:{rule.pk}:{lead.pk}:{first['first_id']}"
            created += plan_sends(lead, TriggerType.NO_REPLY, key, at=now, rules=[rule]).created
    return created


def event_subscriber(event: events.DomainEvent) -> None:
    """Subscribed to the CRM events in AutomationConfig.ready()."""
    plan_for_event(event)


def reply_subscriber(event: events.DomainEvent) -> None:
    """``lead_replied``: the reply ends the lead's pending follow-ups (rules with exit_on_reply)."""
    from automation.engine.optout import end_follow_ups_after_reply

    replied_at = _parse_time(event.payload.get("replied_at")) or timezone.now()
    lead_id = event.payload.get("lead_id")
    if lead_id and Lead.objects.filter(pk=lead_id, account_id=event.account_id).exists():
        end_follow_ups_after_reply(int(lead_id), replied_at=replied_at)


def won_subscriber(event: events.DomainEvent) -> None:
    """``opportunity_won``: the win ends the lead's pending follow-ups at once (rules with exit_on_won)."""
    from automation.engine.optout import end_follow_ups_after_win

    won = Opportunity.objects.filter(pk=event.payload.get("opportunity_id"), account_id=event.account_id,
                                     stage=Opportunity.Stage.WON).values_list("lead_id", flat=True).first()
    if won is not None:
        end_follow_ups_after_win(won)


def _parse_time(value) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, dt.timezone.utc)


def subscribe_all() -> None:
    for name in EVENT_TRIGGERS:
        events.subscribe(name, event_subscriber, many=plan_for_events)
    events.subscribe(events.LEAD_REPLIED, reply_subscriber)
    events.subscribe(events.OPPORTUNITY_WON, won_subscriber)


__all__ = ["plan_for_event", "plan_for_events", "plan_sends", "plan_no_reply", "out_of_quiet_hours", "in_quiet_hours", "subscribe_all", "Q"]
