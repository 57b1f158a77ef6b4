"""AUTH credentials, kept out of everything the suite writes.

A command that carries credentials is built with a placeholder (``PLAIN_RESPONSE``,
``USERNAME``, ``PASSWORD``); only the bytes on the wire have them filled in (``fill``). Steps,
transcripts, reports and replay files keep the placeholder, so a replay with the same
credentials configured sends the same octets, and nothing secret is ever written down.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

# Placeholders, as they appear in recorded command lines (each stands for base64 text, RFC
# 4954 §4).
PLAIN_RESPONSE = b"<credentials: PLAIN response>"  # base64("\0user\0password"), RFC 4616 §2
USERNAME = b"<credentials: username>"  # base64(user), for LOGIN
PASSWORD = b"<credentials: password>"  # base64(password), for LOGIN


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never shown, even by accident
        return f"Credentials({self.username!r}, <password>)"

    def _filled(self) -> tuple[tuple[bytes, bytes], ...]:
        plain = f"\0{self.username}\0{self.password}".encode()
        return tuple((placeholder, base64.b64encode(value)) for placeholder, value in (
            (PLAIN_RESPONSE, plain), (USERNAME, self.username.encode()),
            (PASSWORD, self.password.encode())))

    def fill(self, data: bytes) -> bytes:
        """``data`` with each placeholder replaced by these credentials, base64-encoded."""
        if b"<credentials: " not in data:
            return data
        for placeholder, value in self._filled():
            data = data.replace(placeholder, value)
        return data

    def encoded(self) -> tuple[bytes, ...]:
        """What of these credentials may go on the wire, and must never come back into a
        transcript or a reply's text (a server may echo a line it did not understand)."""
        return tuple(value for _, value in self._filled())


# Credentials no server accepts, for the runs that have none configured: AUTH is exercised
# (challenges, cancelling, refusals), never expected to succeed.
WRONG = Credentials("smtp-conformance-unknown-user", "not-a-password")


# The embedded reference server's one test user (it keeps nothing: no secret).
EMBEDDED_CREDENTIALS = Credentials("conformance", "not-a-secret")
