"""A manager who mistypes a command option gets one line saying what is wrong, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("args", "message"), [
    (["sync_meta_insights", "--since", "2026-13-01"], "--since must be YYYY-MM-DD, not '2026-13-01'."),
    (["sync_meta_insights", "--since", "2999-01-01"], "--since 2999-01-01 is in the future."),
    (["sync_meta_insights", "--account", "nope"], "No account with slug 'nope'."),
    (["sync_meta_insights", "--account", "acme"], "acme is not connected to Meta or has no ad account selected."),
    (["sync_meta_campaigns", "--account", "nope"], "No account with slug 'nope'."),
    (["rebuild_roi_rollups", "--account", "nope"], "No account with slug 'nope'."),
    (["rebuild_roi_rollups", "--since", "yesterday"], "--since must be YYYY-MM-DD, not 'yesterday'."),
    (["backfill_meta_leads", "--account", "nope"], "No account with slug 'nope'."),
    (["backfill_meta_leads", "--account", "acme", "--since", "2026-02-30"], "--since must be YYYY-MM-DD, not '2026-02-30'."),
    (["create_api_token", "--user", "nope"], "No user named 'nope'."),
    (["rotate_token_keys", "--account", "nope"], "No account with slug 'nope'."),
])
def test_a_bad_date_account_or_user_is_a_command_error_that_says_which(acme, args, message):
    with pytest.raises(CommandError) as raised:
        call_command(*args, stdout=StringIO(), stderr=StringIO())

    assert str(raised.value) == message


@pytest.mark.parametrize("keys", [[], ["not-a-fernet-key"]])
def test_rotating_with_no_usable_key_is_refused_before_any_token_is_touched(settings, acme, keys):
    settings.META_TOKEN_KEYS = keys

    with pytest.raises(CommandError, match="META_TOKEN_KEYS") as raised:
        call_command("rotate_token_keys", stdout=StringIO())

    assert "not-a-fernet-key" not in str(raised.value)


def test_create_api_token_for_alice_still_prints_her_token(acme):
    make_user("alice", acme)
    out = StringIO()

    call_command("create_api_token", "--user", "alice", stdout=out)

    assert len(out.getvalue().strip()) == 40


def test_from_the_shell_a_bad_since_is_one_line_on_stderr_and_exit_code_1(tmp_path):
    """Run as a manager would: a real manage.py process (an empty SQLite file: the date is refused
    before any query)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}"}
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]

    result = subprocess.run(manage + ["sync_meta_insights", "--since", "2026-13-01"], env=env, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 1
    assert result.stderr.splitlines() == ["CommandError: --since must be YYYY-MM-DD, not '2026-13-01'."]
    assert result.stdout == ""
