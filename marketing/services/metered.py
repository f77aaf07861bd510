"""A Graph client wrapper for syncs: counts the HTTP calls made and turns throttling into `Throttled`.

After every call it looks at Meta's usage headers (`GraphClient.last_usage`): a regain time, or usage
at the ceiling, means "stop now and come back later" (the sync parks the ad account). A rate-limit
error (codes 4/17/32/613/80000-series) means the same. The client keeps its own retry rules.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterator

from crm_marketing.graph import GraphClient, GraphError, Usage

# Usage headers at or above this percentage: Meta is about to throttle us, so we stop first.
USAGE_CEILING_PCT = 95.0
# When Meta throttles without saying for how long (e.g. code 80004 with no regain time): park 5 minutes,
# doubling for each park in a row (10, 20, 40 ...), at most 4 hours (the scheduled sync interval).
DEFAULT_PARK_SECONDS = 5 * 60
MAX_DEFAULT_PARK_SECONDS = 4 * 3600
CEILING_PARK_SECONDS = 5 * 60


class Throttled(Exception):
    """Meta asked us to slow down: park the ad account for `seconds` (`hinted`: Meta said how long)."""

    def __init__(self, seconds: float, reason: str, *, hinted: bool = True) -> None:
        super().__init__(reason)
        self.seconds = max(1.0, float(seconds))
        self.reason = reason
        self.hinted = hinted

    def until(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.seconds)


def throttle_from_error(error: GraphError) -> Throttled:
    regain = error.usage.regain_seconds if error.usage else 0
    seconds = max(error.retry_after or 0, regain)
    return Throttled(seconds or DEFAULT_PARK_SECONDS, f"Meta rate limit (code {error.code}): {error.message}"[:500],
                     hinted=bool(seconds))


def default_park_seconds(parks_in_a_row: int) -> float:
    """The park when Meta gave no regain time: 5 min, doubled for each park just before this one."""
    return float(min(DEFAULT_PARK_SECONDS * 2 ** min(parks_in_a_row, 16), MAX_DEFAULT_PARK_SECONDS))


def throttle_from_usage(usage: Usage | None) -> Throttled | None:
    if usage is None:
        return None
    if usage.regain_seconds > 0:
        return Throttled(usage.regain_seconds, f"Meta usage headers ask to wait {usage.regain_seconds} s")
    top = max(usage.app_pct, usage.ad_account_pct)
    if top >= USAGE_CEILING_PCT:
        return Throttled(CEILING_PARK_SECONDS, f"Meta usage at {top:.0f}%")
    return None


class MeteredGraph:
    """Delegates to a GraphClient; `calls` counts HTTP responses (retries included)."""

    def __init__(self, client: GraphClient, *, on_call: Callable[[], None] | None = None) -> None:
        self.client = client
        self.calls = 0
        self.on_call = on_call  # e.g. the sync's lease heartbeat, on every HTTP response
        client.session.hooks.setdefault("response", []).append(self._count)

    def close(self) -> None:
        hooks = self.client.session.hooks.get("response", [])
        if self._count in hooks:
            hooks.remove(self._count)

    def _count(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.on_call is not None:
            self.on_call()
        return response

    def _check_usage(self) -> None:
        throttle = throttle_from_usage(self.client.last_usage)
        if throttle is not None:
            raise throttle

    def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except GraphError as error:
            if error.is_rate_limited:
                raise throttle_from_error(error) from error
            raise

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        result = self._call(lambda: self.client.get(path, params))
        self._check_usage()
        return result

    def post(self, path: str, data: dict[str, Any] | None = None, *, retry_post: bool = False) -> dict[str, Any]:
        result = self._call(lambda: self.client.post(path, data, retry_post=retry_post))
        self._check_usage()
        return result

    def batch(self, calls: list[tuple[str, dict[str, Any] | None]]) -> list[dict[str, Any]]:
        """Several GETs in one HTTP call; a call that failed there raises (as Throttled when rate-limited)."""
        results = self._call(lambda: self.client.batch(calls))
        for result in results:
            if isinstance(result, GraphError):
                if result.is_rate_limited:
                    raise throttle_from_error(result) from result
                raise result
        self._check_usage()
        return results

    def iter_pages(self, path: str, params: dict[str, Any] | None = None, *,
                   next_link: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Each page's rows; the usage check runs once the caller has stored a page, before the next call."""
        pages = self.client.iter_pages(path, params, max_pages=100_000, next_link=next_link)
        while True:
            try:
                rows = self._call(lambda: next(pages))
            except StopIteration:
                return
            yield rows
            self._check_usage()
