"""The app refuses to boot in production on developer settings, and passes check --deploy on real ones."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "SECRET_KEY", "CACHE_URL", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"))}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120)


def production_env(**overrides: str) -> dict[str, str]:
    values = {
        "DEBUG": "false",
        "SECRET_KEY": "p" * 20 + "-a-real-production-secret-key-" + "q" * 10,
        "META_TOKEN_KEYS": Fernet.generate_key().decode(),
        "CACHE_URL": "redis://127.0.0.1:6379/1",
        "ALLOWED_HOSTS": "crm.example.com",
        "META_APP_ID": "123",
        "META_APP_SECRET": "real-secret",
    }
    values.update(overrides)
    return values


def test_debug_off_with_the_dev_secret_key_refuses_to_boot_with_a_clear_message():
    result = manage("check", **production_env(SECRET_KEY="dev-insecure-secret-key-change-me"))

    assert result.returncode != 0
    assert "Refusing to start with DEBUG off: SECRET_KEY is the development key" in result.stderr


def test_debug_off_with_a_local_memory_cache_refuses_to_boot():
    result = manage("check", **production_env(CACHE_URL="locmemcache://"))

    assert result.returncode != 0
    assert "CACHE_URL must be a shared cache" in result.stderr


def test_debug_off_without_token_keys_refuses_to_boot():
    result = manage("check", **production_env(META_TOKEN_KEYS=""))

    assert result.returncode != 0
    assert "META_TOKEN_KEYS is empty" in result.stderr


def test_debug_off_with_the_sandbox_app_secret_refuses_to_boot():
    # The app secret signs Meta's webhooks: the sandbox's public value would let anyone forge them.
    result = manage("check", **production_env(META_APP_SECRET="sandbox-secret"))

    assert result.returncode != 0
    assert "META_APP_SECRET is empty or the sandbox's" in result.stderr


def test_check_deploy_passes_with_production_values():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production_env())

    assert result.returncode == 0, result.stdout + result.stderr
