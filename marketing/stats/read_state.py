"""Everything a cached hub answer is keyed on besides the request, read in one statement.

The hub's four reads answer their rendered JSON from the stats cache (marketing.views.stats). Before
they may, they must know that nothing the answer shows has changed: the rollup's version token, the
marks not folded yet, the Meta connection, the last insights sync, the exchange rates and (for the
campaign reads) the campaigns' ids, names and statuses. Read one by one through the ORM that was seven
queries and a transaction on every hit, about two thirds of a cached read's CPU. Here it is one SQL
statement (one snapshot on its own, at any isolation level) whose row-valued inputs come back as one
text each, the rows joined in a fixed order: a key that changes whenever a row is added, removed or
edited, computed by the database without shipping 500 campaign rows to Python on every read.

A miss reads the same state again inside the snapshot its figures are computed in, so the answer is
stored under the state it was computed from (marketing.views.stats._StatsView.answer).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from django.db import connection

from marketing.models import AdAccount, Campaign, ExchangeRate, RollupDirtyCell, RollupVersion
from meta_oauth.models import MetaConnection

@dataclass(frozen=True)
class ReadState:
    token: str | None  # the rollup's version (None: no rollup written yet, nothing is cached)
    marks: int
    newest_mark: int
    meta_connected: bool
    last_synced_at: object  # a datetime on PostgreSQL, text on SQLite: only ever compared
    rates: str  # digest of the account's exchange-rate rows
    campaigns: str  # digest of the campaigns' (Meta id, name, status) rows; "" when not asked


def read_state(account_id: int, currency: str, *, campaigns: bool = False, campaign_status: str | None = None) -> ReadState:
    """The state of the account that a hub answer depends on, as of one moment."""
    sql = _statement(connection.vendor, campaigns, campaign_status is not None)
    params = [account_id] * 5 + [account_id, currency, currency]
    if campaigns:
        params += [account_id] + ([campaign_status] if campaign_status is not None else [])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        token, marks, newest, connected, synced, rates, campaign_rows = cursor.fetchone()
    return ReadState(token=token, marks=marks or 0, newest_mark=newest or 0, meta_connected=bool(connected),
                     last_synced_at=synced, rates=_digest(rates), campaigns=_digest(campaign_rows) if campaigns else "")


def _digest(text: str | None) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()


@lru_cache(maxsize=None)
def _statement(vendor: str, campaigns: bool, by_status: bool) -> str:
    q = connection.ops.quote_name

    def table(model) -> str:
        return q(model._meta.db_table)

    def column(model, name: str) -> str:
        return q(model._meta.get_field(name).column)

    def joined(model, fields: list[str], where: str, order: list[str]) -> str:
        """The rows' fields as one text, rows in ``order`` (fields joined by the ASCII unit separator, rows by
        the record separator: neither is typed in a name)."""
        cells = [f"COALESCE(CAST({column(model, f)} AS TEXT), '')" for f in fields]
        if vendor == "postgresql":
            row = f"concat_ws(chr(31), {', '.join(cells)})"
            return (f"(SELECT string_agg({row}, chr(30) ORDER BY {', '.join(column(model, f) for f in order)}) "
                    f"FROM {table(model)} WHERE {where})")
        row = " || char(31) || ".join(cells)
        return (f"(SELECT group_concat(r, char(30)) FROM (SELECT {row} AS r FROM {table(model)} WHERE {where} "
                f"ORDER BY {', '.join(column(model, f) for f in order)}))")

    account = "{} = %s"
    rate_where = (f"{account.format(column(ExchangeRate, 'account'))} AND ({column(ExchangeRate, 'to_currency')} = %s "
                  f"OR {column(ExchangeRate, 'from_currency')} = %s)")
    parts = [
        f"(SELECT {column(RollupVersion, 'token')} FROM {table(RollupVersion)} WHERE {account.format(column(RollupVersion, 'account'))})",
        f"(SELECT COUNT(*) FROM {table(RollupDirtyCell)} WHERE {account.format(column(RollupDirtyCell, 'account'))})",
        f"(SELECT MAX({column(RollupDirtyCell, 'id')}) FROM {table(RollupDirtyCell)} "
        f"WHERE {account.format(column(RollupDirtyCell, 'account'))})",
        f"(SELECT COUNT(*) FROM {table(MetaConnection)} WHERE {account.format(column(MetaConnection, 'account'))} "
        f"AND {column(MetaConnection, 'status')} = '{MetaConnection.Status.CONNECTED.value}')",
        f"(SELECT MAX({column(AdAccount, 'last_synced_at')}) FROM {table(AdAccount)} WHERE {account.format(column(AdAccount, 'account'))})",
        joined(ExchangeRate, ["from_currency", "to_currency", "rate"], rate_where, ["from_currency", "to_currency", "id"]),
    ]
    if campaigns:
        where = account.format(column(Campaign, "account")) + (f" AND {column(Campaign, 'status')} = %s" if by_status else "")
        parts.append(joined(Campaign, ["meta_campaign_id", "name", "status"], where, ["id"]))
    else:
        parts.append("NULL")
    return "SELECT " + ", ".join(parts)
