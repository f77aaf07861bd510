"""What a storable CRM value is, defined once: the API's serializers, the admin's forms and model
validation (``AccountOwned.clean_fields``) all call these, so the admin cannot save what the API refuses.

- Moments (datetimes and dates) lie between 1970-01-01 and 2999-12-31: far-off years are typos, and the
  ROI windows built around them would run past what ``datetime`` can hold (OverflowError in the rollups).
- JSON holds no NUL (PostgreSQL text and jsonb refuse it) and no unpaired UTF-16 surrogate (not UTF-8
  encodable), and nests at most 32 levels (deeper exhausts the stack in encoders and decoders).
"""
from __future__ import annotations

import datetime as dt
import json
import re

from django import forms
from django.core.exceptions import ValidationError

EARLIEST_MOMENT = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
LATEST_MOMENT = dt.datetime(2999, 12, 31, tzinfo=dt.timezone.utc)
MOMENT_RANGE = f"between {EARLIEST_MOMENT:%Y-%m-%d} and {LATEST_MOMENT:%Y-%m-%d}"
MOMENT_RANGE_MESSAGE = f"Enter a moment {MOMENT_RANGE}."
UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
MAX_JSON_DEPTH = 32


def moment_in_range(value: dt.date | dt.datetime) -> bool:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return EARLIEST_MOMENT.replace(tzinfo=None) <= value <= LATEST_MOMENT.replace(tzinfo=None)
        return EARLIEST_MOMENT <= value <= LATEST_MOMENT
    return EARLIEST_MOMENT.date() <= value <= LATEST_MOMENT.date()


def validate_moment(value: dt.date | dt.datetime | None) -> None:
    if value is not None and not moment_in_range(value):
        raise ValidationError(MOMENT_RANGE_MESSAGE, code="out_of_range")


def json_problem(data) -> str | None:
    """Why parsed JSON cannot be stored as it is (unstorable text, nested too deep), or None."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(value, str):
            if UNSTORABLE_TEXT.search(value):
                return "a string holds a NUL character or an unpaired surrogate"
        elif isinstance(value, dict):
            pending.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
    return None


def validate_storable_json(value) -> None:
    problem = json_problem(value)
    if problem:
        raise ValidationError(f"{problem[0].upper()}{problem[1:]}.", code="unstorable")


def validate_json_object(value) -> None:
    """A JSON object of names to values (``Lead.external_ids``), storable."""
    if not isinstance(value, dict):
        raise ValidationError("Must be an object of id names to values.", code="not_an_object")
    validate_storable_json(value)


def clean_model_fields(instance, exclude) -> dict[str, list[ValidationError]]:
    """The errors of ``instance``'s date, datetime and JSON fields (those not excluded), by field name."""
    from django.db import models

    errors: dict[str, list[ValidationError]] = {}
    for field in instance._meta.concrete_fields:
        if exclude and field.name in exclude:
            continue
        value = getattr(instance, field.attname, None)
        try:
            if isinstance(field, (models.DateField, models.DateTimeField)) and isinstance(value, dt.date):
                validate_moment(value)
            elif isinstance(field, models.JSONField):
                validate_storable_json(value)
        except ValidationError as error:
            errors.setdefault(field.name, []).append(error)
    return errors


class StorableJSONFormField(forms.JSONField):
    """Django's form JSONField, with input nested deep enough to exhaust the stack (RecursionError in
    ``json.loads``, which Django lets through as a 500) as a form error, and unstorable JSON refused."""

    default_error_messages = {"too_deep": f"Nested deeper than {MAX_JSON_DEPTH} levels."}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(validate_storable_json)

    def to_python(self, value):
        try:
            return super().to_python(value)
        except RecursionError:
            raise ValidationError(self.error_messages["too_deep"], code="too_deep") from None

    def bound_data(self, data, initial):
        """What the form shows again: the text as typed when it parses to JSON we cannot store (a lone
        surrogate would otherwise be re-encoded raw into the page, a UnicodeEncodeError)."""
        try:
            value = super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)
        if not isinstance(value, forms.fields.InvalidJSONInput) and data is not None and json_problem(value):
            return forms.fields.InvalidJSONInput(data)
        return value

    def has_changed(self, initial, data):
        try:
            return super().has_changed(initial, data)
        except (RecursionError, ValidationError):
            return True
