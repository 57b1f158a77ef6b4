"""Exim 4 as Debian 12 ships it (exim4-daemon-light), unpacked into a prefix and run on
127.0.0.1 from a root of its own.

The configuration is Debian's: exim4.conf is the package's own exim4.conf.template, rendered the
way update-exim4.conf renders it for debconf's answers to a fresh "local delivery only; not on a
network" install, with an exim4.conf.localmacros (mtas/exim/) in front of it that only moves
things into the root, puts the daemon on loopback, turns DNS off (Debian's own dc_minimaldns)
and queues every message (``queue_only``, no queue runner): nothing is ever delivered. So the
protocol behaviour is the stock one: Debian's ACLs (loopback may relay, restricted characters
in local parts), Exim's error limits, no VRFY/EXPN ACL.

The binary's compiled-in configuration is /etc/exim4/exim4.conf: the daemon runs in a private
mount namespace where the instance's ``etc`` directory is bound over /etc/exim4, and a loopback
resolv.conf and a hosts file over /etc's own. So Exim reads its configuration as root without
-C (a -C configuration is untrusted, and Exim drops root for it when it re-executes itself).
Facts: shared/reference/mtas-on-loopback.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

import trustme

from mtas import base
from mtas.server import MTA

TEMPLATES = Path(__file__).resolve().parent / "exim"
HOST = "mx.exim.test"  # primary_hostname, and so a local domain ("@" in local_domains)
EXIM_USER = "Debian-exim"  # compiled in (EXIM_USER): the spool and the logs are its
TLS_NAMES = (HOST, "127.0.0.1")  # what the instance's certificate is for
LOCK_WAIT = 5.0  # seconds between tries

# update-exim4.conf's macros for a fresh install's debconf answers (exim4-config's
# update-exim4.conf.conf: dc_eximconfig_configtype 'local', dc_relay_nets '', dc_relay_domains
# '', dc_localdelivery 'mail_spool'); it adds "@:localhost" to dc_other_hostnames and
# "127.0.0.1 : ::1" to dc_relay_nets, as here. Ours: the other hostname is HOST.
DEBCONF_MACROS: Mapping[str, str] = MappingProxyType({
    "MAIN_LOCAL_DOMAINS": f"@:localhost:{HOST}",
    "MAIN_RELAY_TO_DOMAINS": "",
    "ETC_MAILNAME": HOST,
    "LOCAL_DELIVERY": "mail_spool",
    "MAIN_RELAY_NETS": ": 127.0.0.1 : ::::1",
    "DCreadhost": "",
    "DCsmarthost": "",
    "DC_eximconfig_configtype": "local",
    "DCconfig_local": "1",
})
MACROS_MARK = "UPEX4CmacrosUPEX4C = 1"  # the template's line update-exim4.conf inserts after


class Exim(MTA):
    """Exim 4.96 from Debian 12's packages, on 127.0.0.1:``port``; STARTTLS with a throwaway
    trustme CA (``ca_file``), no AUTH; every accepted message stays in ``root``/spool."""

    name: ClassVar[str] = "exim"
    title: ClassVar[str] = "Exim"
    packages: ClassVar[tuple[str, ...]] = ("exim4-daemon-light", "exim4-base", "exim4-config")
    installed: ClassVar[tuple[str, ...]] = ("libgnutls-dane0", "libidn12", "libpcre2-8-0",
                                            "libdb5.3")
    users: ClassVar[tuple[str, ...]] = (EXIM_USER,)
    local_domain: ClassVar[str] = HOST
    # From Exim's own specification (spec.txt of exim4-base 4.96), not yet rerun here:
    settings: ClassVar[Mapping[str, str]] = MappingProxyType({
        "no_silent_close": "smtp_max_synprot_errors (default 3) and smtp_max_unknown_commands "
                           "(default 3): Exim drops the connection, with a 5xx and no 421, "
                           "once a session has more syntax/protocol errors or unknown commands "
                           "than these; raising them moves the close later.",
        "relay_refused": "dc_relay_nets (the MAIN_RELAY_NETS macro): Debian's setup adds "
                         "127.0.0.1 : ::1, so a client on loopback (as in these runs) may "
                         "relay; a client elsewhere is refused unless listed there.",
        "esmtp_parameters_advertised parameters of DSN, not advertised":
            "dsn_advertise_hosts (default unset): set to * it advertises DSN, so the ENVID "
            "(and RET, NOTIFY, ORCPT) Exim takes are then offered as well.",
    })

    # -- paths ---------------------------------------------------------------------------

    @property
    def binary(self) -> Path:
        return self.prefix / "usr" / "sbin" / "exim4"

    @property
    def etc(self) -> Path:
        """Bound over /etc/exim4 in the daemon's namespace: its configuration and TLS files."""
        return self.root / "etc"

    @property
    def ca_file(self) -> Path:
        """The CA certificate to verify the instance's STARTTLS certificate with."""
        return self.root / "tls-ca.pem"

    @property
    def mainlog(self) -> Path:
        return self.root / "log" / "mainlog"

    # -- start and stop ------------------------------------------------------------------

    def start(self) -> None:
        """Write the root (configuration, certificate, spool, logs), start ``exim4 -bdf`` in
        its namespace and return once it greets."""
        self.stop()
        self._make_directories()
        self._write_certificate()
        for file, text in self.configuration().items():
            (self.etc / file).write_text(text)
        shutil.copyfile(self.prefix / "etc" / "email-addresses", self.etc / "email-addresses")
        (self.etc / "aliases").write_text("postmaster: root\n")
        resolv, hosts = base.write_private_resolver(self.root / "resolver", HOST)
        self._check_configuration()
        self.run_daemon(base.Daemon(
            argv=[str(self.binary), "-bdf"], log=self.root / "daemon.log",
            binds={self.etc: Path("/etc/exim4"), resolv: Path("/etc/resolv.conf"),
                   hosts: Path("/etc/hosts")}),
            logs=[self.mainlog, self.root / "log" / "paniclog"])

    def _make_directories(self) -> None:
        """Exim's user must reach the root and write the spool and the logs (its SMTP
        receivers run as Debian-exim); the configuration stays root's."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for name in ("etc", "resolver"):
            (self.root / name).mkdir(exist_ok=True)
            (self.root / name).chmod(0o755)
        for name in ("spool", "log", "run"):
            (self.root / name).mkdir(exist_ok=True)
            (self.root / name).chmod(0o750)
            shutil.chown(self.root / name, EXIM_USER, EXIM_USER)

    def _write_certificate(self) -> None:
        """A new throwaway CA and a certificate for TLS_NAMES, in the files Debian's template
        names by default (CONFDIR/exim.crt, CONFDIR/exim.key); the key root:Debian-exim 0640
        as Debian's own exim-gencert makes it: the SMTP receiver reads it as Debian-exim."""
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_file))
        leaf = ca.issue_cert(*TLS_NAMES)
        key, chain = self.etc / "exim.key", self.etc / "exim.crt"
        key.touch(mode=0o640)
        key.chmod(0o640)
        shutil.chown(key, "root", EXIM_USER)
        leaf.private_key_pem.write_to_path(str(key))
        chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))

    def _check_configuration(self) -> None:
        """``exim4 -bV`` on the written configuration (Exim's own syntax check), so a bad one
        fails here with Exim's words rather than as a daemon that never greets."""
        done = subprocess.run([str(self.binary), "-C", str(self.etc / "exim4.conf"), "-bV"],
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            words = (done.stderr + done.stdout).strip().splitlines()[-base.LOG_LINES:]
            raise base.InstallError("exim4 -bV rejects the configuration"
                                    + "".join(f"\n  {line}" for line in words))

    # -- what is published ---------------------------------------------------------------

    def version(self) -> str:
        """Exim's own version (``exim4 -bV``'s first line: "Exim version 4.96 #2 ...") and the
        Debian package's, as apt downloaded it."""
        done = subprocess.run([str(self.binary), "-C", "/dev/null", "-bV"],
                              capture_output=True, text=True, timeout=60, check=False)
        found = re.search(r"Exim version (\S+)", done.stdout + done.stderr)
        own = found.group(1) if found else "unknown"
        package = base.package_version(self.packages[0], self.prefix)
        return f"Exim {own} (Debian {package})"

    def configuration(self) -> dict[str, str]:
        """exim4.conf as the daemon reads it: the local macros, then Debian's template with
        update-exim4.conf's macros and the instance's paths; and the local macros alone."""
        macros = self._local_macros()
        return {"exim4.conf": macros + "\n" + self._rendered_template(),
                "exim4.conf.localmacros": macros}

    def _local_macros(self) -> str:
        text = (TEMPLATES / "exim4.conf.localmacros.in").read_text()
        for key, value in (("@ROOT@", str(self.root)), ("@PORT@", str(self.address.port)),
                           ("@HOST@", HOST)):
            text = text.replace(key, value)
        return text

    def _rendered_template(self) -> str:
        """Debian's exim4.conf.template with update-exim4.conf's macro block after its mark
        line (as ``.ifndef`` each, so the local macros win), and three absolute paths moved:
        exim_path to the unpacked binary (Exim re-executes itself through it), and the
        rewrite rules' /etc/email-addresses and the system_aliases router's /etc/aliases to
        the instance's copies (the machine has neither: no MTA package is installed)."""
        template = (self.prefix / "etc" / "exim4" / "exim4.conf.template").read_text()
        if MACROS_MARK not in template or "exim_path = /usr/sbin/exim4" not in template:
            raise base.InstallError("exim4.conf.template lacks the lines mtas/exim.py edits")
        block = "".join(f".ifndef {name}\n{name}={value}\n.endif\n"
                        for name, value in DEBCONF_MACROS.items())
        block = (f"# macros as update-exim4.conf "
                 f"{base.package_version('exim4-config', self.prefix)} writes them\n{block}")
        text = template.replace(MACROS_MARK, f"{MACROS_MARK}\n{block}", 1)
        text = text.replace("exim_path = /usr/sbin/exim4", f"exim_path = {self.binary}", 1)
        text = text.replace("/etc/email-addresses", str(self.etc / "email-addresses"))
        return text.replace("/etc/aliases", str(self.etc / "aliases"))
