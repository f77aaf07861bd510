"""Helpers of the hub's browser tests: figures formatted the way the hub shows them, screenshots on failure."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ARTIFACTS = Path(__file__).parent / "artifacts"


def es_number(value: Decimal | int, places: int = 0) -> str:
    """1234567.891 -> '1.234.567,89' (es-AR grouping and decimal comma)."""
    text = f"{Decimal(value).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP):,.{places}f}"
    return text.replace(",", "_").replace(".", ",").replace("_", ".")


def es_pesos(value: Decimal) -> str:
    return "$ " + es_number(value, 2)


def es_percent(value: Decimal) -> str:
    rounded = Decimal(value).quantize(Decimal("0.1"), ROUND_HALF_UP)
    places = 0 if rounded == rounded.to_integral_value() else 1
    return es_number(rounded, places) + "%"


def text_of(locator) -> str:
    """What the user reads: inner text with no-break spaces as plain spaces."""
    return " ".join(locator.inner_text().replace("\u00a0", " ").split())


def kpi(page, label: str):
    return page.locator(f'[data-testid="marketingperformancecard-container"][aria-label="{label}"]')


def screenshot_on_failure(request, page, name: str) -> None:
    """Called from a fixture's teardown: a full-page screenshot under tests/e2e/artifacts/ when the test failed."""
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
