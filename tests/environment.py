"""Loaded with -p before Django settings: the test run's environment defaults."""
import os

os.environ.setdefault("Q_SYNC", "true")  # django-q2 runs queued tasks inline, through the real task code
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("FAST_PASSWORD_HASHER", "true")
