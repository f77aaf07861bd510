"""crm_marketing.cli: what every app's commands share (the commands' own errors: test_command_errors.py)."""
from __future__ import annotations

from io import StringIO

from django.core.management.base import OutputWrapper

from crm_marketing.cli import ProgressBar


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_is_drawn_on_a_terminal_and_ends_its_line():
    screen = Terminal()
    bar = ProgressBar(OutputWrapper(screen), "acme act_300001")

    bar("insights", 1, 4)
    bar("insights", 4, 4)
    bar.close()

    assert screen.getvalue() == ("\racme act_300001 insights  [#######.......................] 1/4"
                                 "\racme act_300001 insights  [##############################] 4/4\n")


def test_the_progress_bar_writes_nothing_into_a_pipe_or_log_file():
    piped = StringIO()
    bar = ProgressBar(OutputWrapper(piped), "acme act_300001")

    bar("insights", 2, 4)
    bar.close()

    assert piped.getvalue() == ""
