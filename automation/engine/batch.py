"""What a claimed batch needs to decide each send, in three queries: the sends with their account,
rule, step, template and lead; the leads' opportunities; the leads' automatic messages today."""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

from django.db.models import Count, Q

from automation.engine.planning import account_zone
from automation.models import AutomationRule, MessageSend
from crm_marketing.models import Opportunity

Status, Skip = MessageSend.Status, MessageSend.SkipReason
# A message the lead got, or may have got, counts towards the daily cap.
SENT_STATUSES = (Status.SENDING, Status.UNKNOWN, Status.SENT, Status.DELIVERED, Status.READ)


class Batch:
    """The loaded sends of one claim (due order) and the facts their re-checks read."""

    def __init__(self, send_ids: list[int], claimed_at: dt.datetime, now: dt.datetime) -> None:
        self.now = now
        self.sends = list(MessageSend.objects.select_related("lead__seller").filter(pk__in=send_ids).order_by("due_at", "id"))
        _attach_shared(self.sends)
        lead_ids = {send.lead_id for send in self.sends}
        self.opportunities: dict[int, list[Opportunity]] = defaultdict(list)  # newest first
        if lead_ids:
            for opportunity in (Opportunity.objects.select_related("seller").filter(lead_id__in=lead_ids)
                                .order_by("-created_at", "-id")):
                self.opportunities[opportunity.lead_id].append(opportunity)
        self.sent_today = self._sent_today(send_ids)

    def _sent_today(self, send_ids: list[int]) -> Counter:
        """Per lead: automatic messages today in its account's timezone, any rule, outside this batch."""
        by_start: dict[dt.datetime, set[int]] = defaultdict(set)
        for send in self.sends:
            zone = account_zone(send.account)
            by_start[dt.datetime.combine(self.now.astimezone(zone).date(), dt.time.min, tzinfo=zone)].add(send.lead_id)
        if not by_start:
            return Counter()
        today = Q()
        for start, leads in by_start.items():
            today |= Q(lead_id__in=leads) & (Q(sent_at__gte=start) | Q(sent_at__isnull=True, claimed_at__gte=start))
        rows = (MessageSend.objects.filter(today, status__in=SENT_STATUSES).exclude(pk__in=send_ids)
                .values("lead_id").annotate(n=Count("pk")).values_list("lead_id", "n"))
        return Counter(dict(rows))

    def latest_opportunity(self, send: MessageSend) -> Opportunity | None:
        found = self.opportunities.get(send.lead_id)
        return found[0] if found else None

    def skip_reason(self, send: MessageSend) -> str:
        return skip_reason(send, self.opportunities.get(send.lead_id, []), self.sent_today[send.lead_id])

    def count_going(self, send: MessageSend) -> None:
        """This send goes out: the lead's next sends in the batch see it in their daily cap."""
        self.sent_today[send.lead_id] += 1


def _attach_shared(sends: list[MessageSend]) -> None:
    """Give the sends their account, rule, step and template, each row read once: a batch's sends share a few
    of them, and joining them into every send's row built ~1,000 model instances per batch of 200."""
    for name in ("account", "rule", "step", "template"):
        field = MessageSend._meta.get_field(name)
        ids = {getattr(send, field.attname) for send in sends} - {None}
        rows = field.related_model.objects.in_bulk(ids) if ids else {}
        for send in sends:
            setattr(send, name, rows.get(getattr(send, field.attname)))


def skip_reason(send: MessageSend, opportunities: list[Opportunity], sent_today: int) -> str:
    """Why this send must not go out now (a SkipReason value), or ''."""
    rule, lead = send.rule, send.lead
    if rule is None or send.step_id is None or not rule.is_active:
        return Skip.RULE_INACTIVE
    if send.template is None or not send.template.is_approved:
        return Skip.TEMPLATE_NOT_APPROVED
    if lead.opted_out_at is not None:
        return Skip.OPTED_OUT
    if rule.exit_on_reply and lead.last_inbound_at is not None and lead.last_inbound_at > send.created_at:
        return Skip.LEAD_REPLIED
    if rule.exit_on_won and rule.trigger_type != AutomationRule.Trigger.OPPORTUNITY_WON \
            and any(o.stage == Opportunity.Stage.WON for o in opportunities):
        return Skip.OPPORTUNITY_WON
    if not lead.phone:
        return Skip.NO_PHONE
    if sent_today >= rule.max_sends_per_lead_per_day:
        return Skip.CAP_REACHED
    return ""
