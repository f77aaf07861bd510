"""The time_range rules (marketing/time_ranges.py): which inclusive days each value means."""
from __future__ import annotations

from datetime import date, datetime, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest

from crm_marketing.errors import InvalidInput
from marketing.time_ranges import Window, resolve_window

TODAY = date(2025, 3, 15)  # a Saturday in a non-leap year
ALLOWED_MESSAGE = "Allowed: 7d, 30d, 90d, last_7d, last_30d, last_90d, this_month, last_month, this_year, lifetime, or since and until (YYYY-MM-DD)."


def never_called():
    raise AssertionError("earliest() is only for lifetime")


def window(params: dict, today: date = TODAY, earliest=never_called) -> Window:
    return resolve_window(params, today=today, earliest=earliest)


@pytest.mark.parametrize(("time_range", "since", "until"), [
    ("7d", date(2025, 3, 9), date(2025, 3, 15)),             # 9..15 March: 7 days ending today
    ("30d", date(2025, 2, 14), date(2025, 3, 15)),           # 15 days of Feb (14..28) + 15 of March
    ("90d", date(2024, 12, 16), date(2025, 3, 15)),          # 16 (Dec 16..31) + 31 + 28 + 15
    ("last_7d", date(2025, 3, 8), date(2025, 3, 14)),        # the same lengths, ending yesterday
    ("last_30d", date(2025, 2, 13), date(2025, 3, 14)),
    ("last_90d", date(2024, 12, 15), date(2025, 3, 14)),
    ("this_month", date(2025, 3, 1), date(2025, 3, 15)),
    ("last_month", date(2025, 2, 1), date(2025, 2, 28)),
    ("this_year", date(2025, 1, 1), date(2025, 3, 15)),
])
def test_each_relative_time_range_means_these_inclusive_days(time_range, since, until):
    assert window({"time_range": time_range}) == Window(since, until, time_range)


def test_the_default_time_range_is_the_30_days_ending_today():
    assert window({}) == Window(date(2025, 2, 14), date(2025, 3, 15), "30d")


def test_last_month_in_january_is_the_previous_december_and_in_a_leap_march_ends_on_the_29th():
    assert window({"time_range": "last_month"}, today=date(2025, 1, 10)) == Window(date(2024, 12, 1), date(2024, 12, 31), "last_month")
    assert window({"time_range": "last_month"}, today=date(2024, 3, 5)) == Window(date(2024, 2, 1), date(2024, 2, 29), "last_month")


def test_lifetime_starts_on_the_accounts_first_active_day_or_today_when_there_is_none():
    assert window({"time_range": "lifetime"}, earliest=lambda: date(2023, 6, 1)) == Window(date(2023, 6, 1), TODAY, "lifetime")
    assert window({"time_range": "lifetime"}, earliest=lambda: None) == Window(TODAY, TODAY, "lifetime")
    # Data dated after today (a clock skew) does not make the window run backwards.
    assert window({"time_range": "lifetime"}, earliest=lambda: date(2025, 4, 1)) == Window(TODAY, TODAY, "lifetime")


def test_since_and_until_give_an_inclusive_custom_window():
    assert window({"since": "2025-01-01", "until": "2025-01-31"}) == Window(date(2025, 1, 1), date(2025, 1, 31), "custom")
    assert window({"since": "2025-01-01", "until": "2025-01-01", "time_range": "custom"}).days == 1


def test_the_previous_period_is_as_long_and_ends_the_day_before():
    # 30d on 15 March: 14 Feb..15 Mar; before it 30 days: 15..31 Jan (17) + 1..13 Feb (13).
    assert window({"time_range": "30d"}).previous() == Window(date(2025, 1, 15), date(2025, 2, 13), "30d")
    # A whole month of 31 days: the 31 days before 1 March are 29 Jan..28 Feb.
    assert Window(date(2025, 3, 1), date(2025, 3, 31)).previous() == Window(date(2025, 1, 29), date(2025, 2, 28))


def test_a_window_starts_and_ends_at_midnight_in_the_accounts_timezone():
    start, end = Window(date(2025, 3, 1), date(2025, 3, 31)).bounds(ZoneInfo("America/Argentina/Buenos_Aires"))

    assert start == datetime(2025, 3, 1, 3, 0, tzinfo=dt_timezone.utc)  # UTC-3 all year
    assert end == datetime(2025, 4, 1, 3, 0, tzinfo=dt_timezone.utc)


@pytest.mark.parametrize("params", [{"time_range": "junk"}, {"time_range": "31d"}, {"time_range": "custom"}, {"time_range": "LIFETIME"}])
def test_an_unknown_time_range_is_refused_with_the_allowed_values(params):
    with pytest.raises(InvalidInput) as error:
        window(params)

    assert error.value.fields == {"time_range": [ALLOWED_MESSAGE]}


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"since": "2025-03-01"}, "until", "Enter a date as YYYY-MM-DD."),
    ({"since": "2025-03-01", "until": "31/03/2025"}, "until", "Enter a date as YYYY-MM-DD."),
    ({"since": "yesterday", "until": "2025-03-31"}, "since", "Enter a date as YYYY-MM-DD."),
    ({"since": "2025-03-31", "until": "2025-03-01"}, "since", "since must be on or before until."),
    ({"since": "2000-01-01", "until": "2025-03-01"}, "until", "The range may span at most 3660 days."),
    ({"since": "2025-03-01", "until": "2025-03-31", "time_range": "7d"}, "time_range", "Give either time_range or since and until, not both."),
])
def test_a_bad_custom_window_is_refused_on_the_field_at_fault(params, field, message):
    with pytest.raises(InvalidInput) as error:
        window(params)

    assert error.value.fields == {field: [message]}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["stats", "stats/roi", "stats/timeseries", "campaigns"])
def test_the_endpoints_answer_400_listing_the_allowed_time_ranges(alice_api, path):
    response = alice_api.get(f"/crm/marketing/{path}?time_range=yesterday")

    assert response.status_code == 400
    assert response.json() == {"success": False, "error": {
        "code": "validation_error", "message": "The request has invalid fields.", "fields": {"time_range": [ALLOWED_MESSAGE]},
    }}


def test_lifetime_never_starts_before_1970_whatever_the_data_says():
    assert window({"time_range": "lifetime"}, earliest=lambda: date(1, 1, 1)) == Window(date(1970, 1, 1), TODAY, "lifetime")


def test_a_stats_window_splits_into_the_report_windows_the_insights_sync_asks_meta_for():
    march = Window(date(2025, 3, 1), date(2025, 3, 31), "this_month")

    assert march.halves() == (Window(date(2025, 3, 1), date(2025, 3, 15), "this_month"),
                              Window(date(2025, 3, 16), date(2025, 3, 31), "this_month"))
    assert march.slices(10) == [Window(date(2025, 3, 22), date(2025, 3, 31), "this_month"),
                                Window(date(2025, 3, 12), date(2025, 3, 21), "this_month"),
                                Window(date(2025, 3, 2), date(2025, 3, 11), "this_month"),
                                Window(date(2025, 3, 1), date(2025, 3, 1), "this_month")]
    assert march.as_dict() == {"since": "2025-03-01", "until": "2025-03-31"}
    assert str(march) == "2025-03-01..2025-03-31"
