"""Every Meta time (Graph fields, webhook timestamps, debug_token expiries) is read by one parser."""
from __future__ import annotations

import datetime as dt

import pytest

from crm_marketing.meta_time import parse_meta_time

UTC = dt.timezone.utc


@pytest.mark.parametrize(("sent", "read"), [
    ("2026-11-24T14:03:11+0000", dt.datetime(2026, 11, 24, 14, 3, 11, tzinfo=UTC)),
    ("2026-10-01T00:00:00-0300", dt.datetime(2026, 10, 1, 3, 0, tzinfo=UTC)),
    ("2026-10-01T00:00:00.250+00:00", dt.datetime(2026, 10, 1, 0, 0, 0, 250000, tzinfo=UTC)),
    ("2026-10-01T00:00:00Z", dt.datetime(2026, 10, 1, tzinfo=UTC)),
    (1764000000, dt.datetime(2025, 11, 24, 16, 0, tzinfo=UTC)),
    ("1764000000", dt.datetime(2025, 11, 24, 16, 0, tzinfo=UTC)),
])
def test_graph_times_and_unix_seconds_read_as_the_same_aware_moment(sent, read):
    assert parse_meta_time(sent) == read


@pytest.mark.parametrize("sent", [None, "", 0, "0", True, "yesterday", "2026-11-24T14:03:11", "2026-13-01T00:00:00+0000",
                                  "-5", 10**20, ["2026-11-24T14:03:11+0000"]])
def test_a_missing_never_or_unreadable_meta_time_is_none_not_a_crash(sent):
    assert parse_meta_time(sent) is None
