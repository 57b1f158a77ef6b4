"""docs/checks.md, the checks reference of the documentation site, generated from the check
registry and the fault servers' tables (which fault proves each check):

    python -m tests.checks_reference > docs/checks.md

tests/test_docs_site.py holds the committed page to what this writes.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from conformance.checks import CHECKS, Check
from conformance.testing.faults import Faults
from tests.batch_server import BATCH_FAULTS
from tests.esmtp_server import ESMTP
from tests.fault_server import MUST, NOTED, RELAY, SHOULD, SMUGGLING
from tests.hostile_server import HOSTILE

# Each table of faults, by the test server that commits them.
SERVERS: tuple[tuple[str, Faults], ...] = (
    ("tests/fault_server.py", MUST | SHOULD | NOTED | SMUGGLING | RELAY),
    ("tests/esmtp_server.py", ESMTP),
    ("tests/batch_server.py", BATCH_FAULTS),
    ("tests/hostile_server.py", HOSTILE),
)

INTRODUCTION = """# Checks

Every reply the server sends is judged by each of these checks. A check is one function in
`conformance/checks/`, registered with its id, its level (MUST fails a run; SHOULD warns, and
fails with `--smtp-strict`; INFO is a remark) and the rule it enforces. Each is proven by a
test server that breaks it (`tests/`): the fault listed under it, which the suite must report
as that check's finding and no other. This page is generated from the registry and those
servers' tables (`python -m tests.checks_reference`); a test keeps it so.
"""


def _what(check: Check) -> str:
    doc = inspect.getdoc(check.run)
    if not doc:
        return ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _faults(check: Check) -> Iterator[str]:
    for server, faults in SERVERS:
        for fault in faults.values():
            if fault.check == check.id:
                stateful = " (after the right sequence only)" if fault.stateful else ""
                yield f"`{fault.name}` in `{server}`: {fault.description}{stateful}"


def render() -> str:
    lines = [INTRODUCTION, "| Check | Level | Rule |", "| --- | --- | --- |"]
    lines += [f"| [`{c.id}`](#{c.id}) | {c.level or 'the row'} | {c.citation} |"
              for c in CHECKS.values()]
    for check in CHECKS.values():
        level = check.level or \
            "the profile row's (MUST under seed and rfc821, SHOULD under rfc5321)"
        timing = " **Timing:** a replay answered in time makes a finding INCONCLUSIVE." \
            if check.timing else ""
        lines += ["", f"## {check.id}", "",
                  f"**Level:** {level}. **Rule:** {check.citation}.{timing}"]
        if what := _what(check):
            lines += ["", what]
        proofs = list(_faults(check))
        lines += ["", "Proven by:", "", *(f"- {proof}" for proof in proofs)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
