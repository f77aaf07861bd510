"""Automation admin: the send log (rules and templates are registered by their own modules)."""
from automation import admin_sends  # noqa: F401
