"""The fault suite prints its table (one line per fault run) at the end of the pytest run."""

import pytest

from tests.faults.harness import LINES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LINES:
        terminalreporter.section("delivery under faults")
        for line in LINES:
            terminalreporter.write_line(line)
