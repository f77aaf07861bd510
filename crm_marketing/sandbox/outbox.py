"""Webhooks the sandbox emits on its own (message statuses, user preferences, template updates).

With no `url` they queue for a test to take (`take()`); with a `url` (the demo, live-server tests)
a background thread POSTs each one signed, once its delay has passed."""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any

from . import webhooks

log = logging.getLogger("crm_marketing.sandbox")


class WebhookOutbox:
    def __init__(self, app_secret: str, url: str | None = None) -> None:
        self.app_secret = app_secret
        self.default_url = url
        self.url = url
        self._cond = threading.Condition()
        self._queued: list[dict[str, Any]] = []
        self._due: list[tuple[float, int, dict[str, Any], str]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.deliveries: list[dict[str, Any]] = []  # what the thread POSTed: url, status, field

    def emit(self, payload: dict[str, Any], *, delay: float = 0.0) -> None:
        with self._cond:
            if self.url is None:
                self._queued.append(payload)
                return
            heapq.heappush(self._due, (time.monotonic() + max(0.0, delay), next(self._seq), payload, self.url))
            self._ensure_thread()
            self._cond.notify()

    def take(self) -> list[dict[str, Any]]:
        with self._cond:
            taken, self._queued = self._queued, []
            return taken

    def pending(self) -> int:
        with self._cond:
            return len(self._queued) + len(self._due)

    def clear(self) -> None:
        """Back to the constructor's URL with nothing queued or due (deliveries in flight finish)."""
        with self._cond:
            self._queued.clear()
            self._due.clear()
            self.deliveries.clear()
            self.url = self.default_url

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._stopping = False

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="meta-sandbox-webhooks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._due or self._due[0][0] > time.monotonic()):
                    self._cond.wait(timeout=(self._due[0][0] - time.monotonic()) if self._due else None)
                if self._stopping:
                    return
                _, _, payload, url = heapq.heappop(self._due)
            self._post(url, payload)

    def _post(self, url: str, payload: dict[str, Any]) -> None:
        field_name = payload.get("entry", [{}])[0].get("changes", [{}])[0].get("field", "")
        try:
            status = webhooks.post_signed(url, payload, self.app_secret).status_code
        except OSError as error:  # the app is down: Meta would retry later, the sandbox logs and drops
            log.warning("sandbox webhook %s to %s failed: %s", field_name, url, error)
            status = None
        with self._cond:
            self.deliveries.append({"url": url, "status": status, "field": field_name})
