"""The SMTP conformance suite: Hypothesis-generated sessions against the target server.

The target, profile, timeout and example budget come from the plugin's options.
"""

from __future__ import annotations

from hypothesis.stateful import run_state_machine_as_test

from conformance.plugin import SuiteConfig


def test_server_conforms(smtp_config: SuiteConfig, smtp_state_machine: type) -> None:
    """Every reply to every generated session is documented, well formed, and in order."""
    run_state_machine_as_test(
        smtp_state_machine, settings=smtp_config.hypothesis_settings())
