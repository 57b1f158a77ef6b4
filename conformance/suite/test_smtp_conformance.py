"""The SMTP conformance suite: Hypothesis-generated sessions against the target server.

The target, profile, timeout and budgets come from the plugin's options; the run engine
(conformance.search.runner) does the work and raises one failure listing every failing finding.
"""

from __future__ import annotations

from collections.abc import Callable


def test_server_conforms(smtp_run: Callable[[], None]) -> None:
    """Every reply to every generated session is documented, well formed, and in order."""
    smtp_run()
