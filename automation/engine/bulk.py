"""One UPDATE for many sends with a value per row (``UPDATE ... FROM`` a ``VALUES`` list, returning the
ids it changed), on PostgreSQL and SQLite alike. Django's ``Case(When(...))`` does the same in SQL
but costs a few milliseconds of Python per batch to build; this costs one string."""
from __future__ import annotations

from typing import Any

from django.db import connection

from automation.models import MessageSend

# PostgreSQL types a VALUES list from its first row: the per-row columns say what they hold.
_PG_CASTS = {"id": "bigint", "channel_id": "bigint", "parameters": "jsonb", "sent_at": "timestamptz",
             "next_attempt_at": "timestamptz", "meta_message_id": "varchar"}


def update_sends(rows: dict[int, dict[str, Any]], *, set_all: dict[str, Any], where: dict[str, Any]) -> set[int]:
    """``rows``: {send id: {column: value}} (every row the same columns); ``set_all``: columns set alike;
    ``where``: column equalities a row must still meet. Returns the ids of the rows changed."""
    if not rows:
        return set()
    quote, table = connection.ops.quote_name, connection.ops.quote_name(MessageSend._meta.db_table)
    columns = list(next(iter(rows.values())))
    postgres = connection.vendor == "postgresql"
    cast = (lambda name: f"CAST(%s AS {_PG_CASTS[name]})") if postgres else (lambda name: "%s")
    values = ", ".join("(" + ", ".join(cast(name) for name in ["id", *columns]) + ")" for _ in rows)
    params: list[Any] = [_db(name, value) for send_id, row in rows.items() for name, value in [("id", send_id), *row.items()]]
    assignments = [f"{quote(name)} = v.{quote(name)}" for name in columns] + [f"{quote(name)} = %s" for name in set_all]
    conditions = [f"{table}.{quote(name)} = %s" for name in where]
    sql = (f"WITH v ({', '.join(quote(name) for name in ['id', *columns])}) AS (VALUES {values}) "
           f"UPDATE {table} SET {', '.join(assignments)} FROM v WHERE {table}.{quote('id')} = v.{quote('id')} "
           + "".join(f"AND {condition} " for condition in conditions) + f"RETURNING {table}.{quote('id')}")
    params += [_db(name, value) for name, value in set_all.items()] + [_db(name, value) for name, value in where.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def _db(name: str, value: Any) -> Any:
    """The value as the column's field writes it (datetimes, JSON), so both databases read it alike."""
    return value if name == "id" else MessageSend._meta.get_field(name).get_db_prep_save(value, connection)
