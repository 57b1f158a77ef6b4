"""Sendmail 8.17.1.9 (Debian 12's sendmail-bin, unpacked) on 127.0.0.1, queue-only.

The .cf is built with m4 from the unpacked sendmail-cf, from Debian's own prototype
(cf/debian/sendmail.mc) with only what running it beside the machine's MTA needs changed:
every path under ``root`` (MAIL_SETTINGS_DIR, queue, pid, status files), one listener on
127.0.0.1:port (no MSA), the service switch on files (no DNS), DeliveryMode=queueonly and
no queue runner (nothing is ever delivered). Debian's access, aliases and helpfile are
used as the package ships them. No STARTTLS: Debian ships it off (update_tls only warns).
Facts: shared/reference/mtas-on-loopback.md.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

from mtas import base
from mtas.server import MTA

CF_VERSION = "8.17.1.9"
# The suite's fixed reverse-path domain: Sendmail refuses a sender whose domain does not
# resolve (553 5.1.8); the private host table makes it resolve, as a real domain would.
SENDER_DOMAINS = ("example.test", "client.example.test")

MC_TEMPLATE = """\
divert(-1)dnl
# Debian 12's cf/debian/sendmail.mc (sendmail-cf {version}), run from {root}.
# Changed: paths under the root, one listener, files-only service switch, queue-only.
divert(0)dnl
define(`_CF_DIR_', `{cf}/')dnl
define(`MAIL_SETTINGS_DIR', `{root}/etc/')dnl
define(`_USE_ETC_MAIL_')dnl
include(`{cf}/m4/cf.m4')dnl
include(`{cf}/debian/autoconf.m4')dnl
VERSIONID(`smtp-conformance: Debian sendmail.mc on loopback')dnl
OSTYPE(`debian')dnl
DOMAIN(`debian-mta')dnl
dnl # --- this instance's paths (Debian's are compiled into debian.m4/debian-mta.m4)
define(`QUEUE_DIR', `{root}/mqueue')dnl
define(`confPID_FILE', `{root}/run/sendmail.pid')dnl
define(`confCONTROL_SOCKET_NAME', `{root}/run/smcontrol')dnl
define(`STATUS_FILE', `{root}/lib/sendmail.st')dnl
define(`confHOST_STATUS_DIRECTORY', `{root}/lib/host_status')dnl
define(`confDEAD_LETTER_DROP', `{root}/lib/dead.letter')dnl
define(`confEBINDIR', `{prefix}/usr/libexec/sendmail')dnl
dnl # --- nothing delivered: queue only (and the daemon runs without -q)
define(`confDELIVERY_MODE', `queueonly')dnl
dnl # --- Debian's stock sendmail.mc from here (MSA listener dropped, port changed)
FEATURE(`no_default_msa')dnl
DAEMON_OPTIONS(`Family=inet,  Name=MTA-v4, Port={port}, Addr=127.0.0.1')dnl
define(`confPRIVACY_FLAGS',dnl
`needmailhelo,needexpnhelo,needvrfyhelo,restrictqrun,restrictexpand,nobodyreturn,authwarnings')dnl
define(`confCONNECTION_RATE_THROTTLE', `15')dnl
define(`confCONNECTION_RATE_WINDOW_SIZE',`10m')dnl
FEATURE(`use_cw_file')dnl
FEATURE(`access_db', , `skip')dnl
FEATURE(`greet_pause', `1000')dnl 1 seconds
FEATURE(`delay_checks', `friend', `n')dnl
define(`confBAD_RCPT_THROTTLE',`3')dnl
FEATURE(`conncontrol', `nodelay', `terminate')dnl
FEATURE(`ratecontrol', `nodelay', `terminate')dnl
MAILER_DEFINITIONS
MAILER(`local')dnl
MAILER(`smtp')dnl
"""

SERVICE_SWITCH = "passwd\t\tfiles\nhosts\t\tfiles\naliases\t\tfiles\n"  # service.switch-nodns


class Sendmail(MTA):
    """``sendmail -bD`` in a private mount namespace whose /etc/hosts names the host in a
    .test domain (Sendmail sleeps 60 s at start without a qualified name) and whose
    resolv.conf points at loopback."""

    name = "sendmail"
    title = "Sendmail"
    packages = ("sendmail-bin", "sendmail-base", "sendmail-cf")
    installed = ("libldap-2.5-0", "liblockfile1", "libsasl2-2", "libwrap0", "libdb5.3",
                 "libnsl2", "libssl3", "m4", "procps")
    users = ("smmta", "smmsp")  # Debian's TrustedUser (debian-mta.m4) and queue group
    local_domain = "mx.sendmail.test"
    settings: ClassVar[Mapping[str, str]] = MappingProxyType({
        "relay_refused": "the access database: Debian's (examples/db/access) has "
                         "Connect:127 RELAY and Connect:IPv6:::1 RELAY, so a client on "
                         "loopback (as in these runs) may relay; without them it is refused.",
        # Debian's sendmail.mc (kept here): confPRIVACY_FLAGS, PrivacyOptions in sendmail.cf
        "reply_code_documented VRFY": "PrivacyOptions needvrfyhelo (Debian's "
                                      "confPRIVACY_FLAGS): VRFY before HELO/EHLO gets 503; "
                                      "without it, VRFY is answered in any state.",
        "reply_code_documented EXPN": "PrivacyOptions needexpnhelo (Debian's "
                                      "confPRIVACY_FLAGS): EXPN before HELO/EHLO gets 503; "
                                      "without it, EXPN is answered in any state.",
    })

    @property
    def binary(self) -> Path:
        return self.prefix / "usr/libexec/sendmail/sendmail"

    @property
    def cf(self) -> Path:
        return self.root / "etc/sendmail.cf"

    @property
    def log(self) -> Path:
        return self.root / "sendmail.log"

    def _mc(self) -> str:
        return MC_TEMPLATE.format(version=CF_VERSION, root=self.root, port=self.address.port,
                                  cf=self.prefix / "usr/share/sendmail/cf", prefix=self.prefix)

    def _write_files(self) -> None:
        """The settings directory as Debian's postinst makes it (update_db: access from
        examples/db/access, local-host-names = localhost + the host's name)."""
        etc = self.root / "etc"
        for sub in ("etc", "mqueue", "run", "lib/host_status", "resolver"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "mqueue").chmod(0o700)
        examples = self.prefix / "usr/share/sendmail/examples/db"
        shutil.copy(examples / "access", etc / "access")
        shutil.copy(examples / "aliases", etc / "aliases")
        shutil.copy(self.prefix / "etc/mail/helpfile", etc / "helpfile")
        (etc / "local-host-names").write_text(f"localhost\n{self.local_domain}\n")
        (etc / "service.switch").write_text(SERVICE_SWITCH)
        for empty in ("relay-domains", "trusted-users"):
            (etc / empty).touch()
        (etc / "sendmail.mc").write_text(self._mc())

    def _hosts(self) -> dict[Path, Path]:
        """resolv.conf on loopback and a hosts file whose first name for 127.0.0.1 is the
        local domain, with the machine's own host name (what Sendmail looks up) as an alias
        (base.write_private_resolver names only the first label of host_name)."""
        resolv, hosts = base.write_private_resolver(self.root / "resolver", self.local_domain)
        names = " ".join(dict.fromkeys([self.local_domain, socket.gethostname(), "localhost",
                                        *SENDER_DOMAINS]))
        hosts.write_text(f"127.0.0.1 {names}\n::1 localhost\n")
        return {resolv: Path("/etc/resolv.conf"), hosts: Path("/etc/hosts")}

    def _in_namespace(self, argv: list[str]) -> list[str]:
        mounts = " && ".join(f"mount --bind {src} {dst}" for src, dst in self._hosts().items())
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                f'{mounts} && exec "$@"', "sh", *argv]

    def _build(self) -> None:
        """sendmail.cf with m4; access.db with makemap; aliases.db with sendmail -bi."""
        etc = self.root / "etc"
        self.cf.write_text(base.run(["m4", str(etc / "sendmail.mc")]))
        makemap = str(self.prefix / "usr/libexec/sendmail/makemap")
        base.run(["sh", "-c", 'exec "$0" -C "$1" hash "$2" < "$2"', makemap, str(self.cf),
                  str(etc / "access")])
        base.run(self._in_namespace([str(self.binary), "-C", str(self.cf), "-bi"]), timeout=60)

    def start(self) -> None:
        base.need_root("starting Sendmail")
        self.stop()
        self._write_files()
        self._build()
        self.run_daemon(base.Daemon([str(self.binary), "-C", str(self.cf), "-bD", "-L",
                                     "sm-mta", "-O", "LogLevel=9"],
                                    self.log, binds=dict(self._hosts())), timeout=90)

    def version(self) -> str:
        package = base.package_version("sendmail-bin", self.prefix)
        return f"Sendmail {CF_VERSION} (Debian {package})"

    def configuration(self) -> dict[str, str]:
        names = ("sendmail.mc", "sendmail.cf", "access", "aliases", "local-host-names",
                 "service.switch")
        return {name: (self.root / "etc" / name).read_text() for name in names
                if (self.root / "etc" / name).exists()}
