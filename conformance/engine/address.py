"""Where the server under test is: ``HOST[:PORT]`` parsed once, with a one-line error for
every way it can be wrong (no resolver is asked: that is the client's, at connect)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from conformance.protocol.errors import UsageError

DEFAULT_PORT = 25


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, default_port: int = DEFAULT_PORT) -> ServerAddress:
        """``HOST[:PORT]``, with an IPv6 host in brackets: ``[::1]:2525``."""
        text = text.strip()
        if not text:
            raise UsageError("empty server address (expected HOST[:PORT])")
        if "://" in text:
            raise UsageError(f"bad server address {text!r}: give HOST[:PORT], without a "
                             f"scheme")
        port_text: str | None = None  # None: no port given
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            if not bracket:
                raise UsageError(f"bad server address {text!r}: missing ']'")
            if rest and not rest.startswith(":"):
                raise UsageError(f"bad server address {text!r}: expected ':PORT' after ']'")
            if ip_version(host) != 6:
                raise UsageError(f"bad server address {text!r}: {host!r} is not IPv6")
            port_text = rest[1:] if rest else None
        elif text.count(":") > 1:
            raise UsageError(f"bad server address {text!r}: put an IPv6 address in brackets")
        else:
            host, colon, rest = text.partition(":")
            port_text = rest if colon else None
        if not host:
            raise UsageError(f"bad server address {text!r}: missing host")
        if host.replace(".", "").isdigit() and ip_version(host) != 4:
            # "2525" or "127.1": the resolver would take them as legacy IPv4 forms (2525 is
            # 0.0.9.221), never what was meant.
            raise UsageError(f"bad server address {text!r}: {host!r} is neither a host name "
                             f"nor a dotted-quad IPv4 address (a port goes after HOST:)")
        if ip_version(host) is None and not _is_host_name(host):
            raise UsageError(f"bad server address {text!r}: {host!r} is not a host name "
                             f"(dot-separated labels of 1-63 letters, digits, '-' or '_')")
        return cls(host, default_port if port_text is None else _parse_port(port_text, text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# A name for the resolver (RFC 1123 §2.1), so "_" is let through as resolvers and container
# networks do; not RFC 5321's Domain (grammar.DOMAIN), which is what a server is called in SMTP.
HOST_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
MAX_HOST_NAME = 253  # octets, without the root's trailing dot (RFC 1034 §3.1)


def _is_host_name(host: str) -> bool:
    """Whether ``host`` can be handed to the resolver: ASCII labels as above, or a name the
    IDNA codec turns into them (the socket module does the same before resolving)."""
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:  # an empty or over-long label, or a character IDNA refuses
        return False
    name = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    return 0 < len(name) <= MAX_HOST_NAME and \
        all(HOST_LABEL_RE.fullmatch(label) for label in name.split("."))


def _parse_port(port_text: str, whole: str) -> int:
    if not port_text:
        raise UsageError(f"bad server address {whole!r}: empty port")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise UsageError(f"bad server address {whole!r}: port must be 1-65535")
    return int(port_text)


def ip_version(text: str) -> int | None:
    """4 or 6 if ``text`` is an IP address of that version (IPv6 without brackets), else
    None."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None
