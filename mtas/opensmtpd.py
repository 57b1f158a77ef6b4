"""Debian 12's OpenSMTPD (6.8.0p2), unpacked into a prefix and run on 127.0.0.1 from a root
directory of its own.

smtpd has its spool (/var/spool/smtpd), its chroot (/var/lib/opensmtpd/empty), its helpers
(/usr/libexec/opensmtpd: mail.maildir and the rest), its control socket (/var/run/smtpd.sock)
and its resolver's files (/etc/resolv.conf, /etc/hosts, /etc/mailname) compiled in. The
daemon therefore runs in a private mount namespace where each of these paths is a bind mount
of a directory or file under ROOT, so the machine's own /etc and /var are never touched.

Mail for ``mx.opensmtpd.test`` (any local part: a catch-all virtual table) goes to one
maildir, ROOT/mailbox/Maildir, written as ``nobody``; every other domain is refused (there is
no relay action), and the daemon starts with its remote transfers paused (``-P mta``) as a
second guard. Its resolver reads only a private hosts file (``lookup file``), so neither the
client's PTR lookup nor anything else asks DNS. No STARTTLS (see CONFIG: 6.8.0p2's TLS is
broken with Debian 12's OpenSSL 3; OpenSMTPD/OpenSMTPD issue 1239); no AUTH.
Facts: shared/reference/mtas-on-loopback.md, smtpd(8), smtpd.conf(5), table(5).
"""

from __future__ import annotations

import os
import pwd
import re
from pathlib import Path
from types import MappingProxyType

from mtas import base
from mtas.server import MTA

DOMAIN = "mx.opensmtpd.test"  # the instance's name and its one local domain
SINK_USER = "nobody"  # delivers the maildir: smtpd runs an MDA as a user, never as root
ROOT_ONLY_DIR = 0o711  # smtpd checks its spool root is root's with this mode

# The paths the Debian binary has compiled in (strings(1) of usr/sbin/smtpd), each provided
# in the daemon's namespace by a directory of the instance (ROOT/<name>).
SPOOL = Path("/var/spool/smtpd")
CHROOT = Path("/var/lib/opensmtpd/empty")
LIBEXEC = Path("/usr/libexec/opensmtpd")
RUN = Path("/run")  # /var/run is a symlink to it on Debian 12: smtpd.sock is made there

CONFIG = """\
# OpenSMTPD on 127.0.0.1 for the conformance suite: loopback only, no DNS, nothing delivered
# off the machine. Written by mtas/opensmtpd.py at each start.

# No STARTTLS: with OpenSSL 3 this package's privilege-separated key signing fails every
# handshake, RSA or ECDSA ("missing private key", then "EVP lib"), so offering it would only
# publish a broken TLS layer. On the one loopback address.
listen on 127.0.0.1 port {port} hostname {domain}

# Every recipient at the local domain to the one sink user, whose home is ROOT/mailbox.
table sink file:{root}/conf/virtual
table sinkbase file:{root}/conf/userbase
action "sink" maildir "{root}/mailbox/Maildir" virtual <sink> userbase <sinkbase>

# The local domain only: no relay action, so any other domain is refused (550).
match from any for domain "{domain}" action "sink"
"""


class OpenSMTPD(MTA):
    """smtpd in the foreground (``-d``: no daemon, its log on stderr) in a private mount
    namespace; its processes (parent, control, lka, queue, scheduler, pony, klondike, and any
    MDA) stay in the process group the Daemon starts, so stopping the group stops them all."""

    name = "opensmtpd"
    title = "OpenSMTPD"
    packages = ("opensmtpd",)
    installed = ("libevent-2.1-7", "libssl3", "libdb5.3")  # ldd of usr/sbin/smtpd
    users = ("opensmtpd", "opensmtpq")  # compiled in: SMTPD_USER and SMTPD_QUEUE_USER
    local_domain = DOMAIN
    settings = MappingProxyType({})

    @property
    def binary(self) -> Path:
        return self.prefix / "usr" / "sbin" / "smtpd"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def log(self) -> Path:
        return self.root / "smtpd.log"

    def start(self) -> None:
        self.stop()
        self._make_directories()
        self._write_configuration()
        binds = self._binds()
        self._check_configuration(binds)
        self.log.write_bytes(b"")
        self.run_daemon(base.Daemon(
            [str(self.binary), "-d", "-P", "mta", "-f", str(self.conf / "smtpd.conf")],
            self.log, binds=binds))

    def version(self) -> str:
        """smtpd -h prints "version: OpenSMTPD 6.8.0p2" (then its usage, exit 1)."""
        own = "OpenSMTPD"
        try:
            base.run([str(self.binary), "-h"])
        except base.InstallError as error:
            found = re.search(r"OpenSMTPD \S+", str(error))
            own = found.group(0) if found else own
        return f"{own} (Debian {base.package_version('opensmtpd', self.prefix)})"

    def configuration(self) -> dict[str, str]:
        names = ("smtpd.conf", "virtual", "userbase", "resolv.conf", "hosts")
        return {name: (self.conf / name).read_text() for name in names
                if (self.conf / name).exists()}

    def _make_directories(self) -> None:
        """The instance's directories. smtpd insists on its spool root being root's, mode
        0711 (it makes the queue directories inside it itself, owned by opensmtpq), and on
        its chroot being root's and not writable by others. The mailbox is the sink user's:
        mail.maildir runs as that user. Daemons reach ROOT as their own users: 0755."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for name in ("conf", "tls", "run", "empty", "mailbox"):
            (self.root / name).mkdir(exist_ok=True)
            (self.root / name).chmod(0o755)
        spool = self.root / "spool"
        spool.mkdir(exist_ok=True)
        spool.chmod(ROOT_ONLY_DIR)
        sink = pwd.getpwnam(SINK_USER)
        os.chown(self.root / "mailbox", sink.pw_uid, sink.pw_gid)

    def _write_configuration(self) -> None:
        """smtpd.conf, its two tables, and the resolver's files for the namespace."""
        text = CONFIG.format(domain=DOMAIN, root=self.root, port=self.address.port)
        (self.conf / "smtpd.conf").write_text(text)
        # table(5): "@" is a virtual table's catch-all; a userinfo entry is uid:gid:home.
        (self.conf / "virtual").write_text("@ sink\n")
        sink = pwd.getpwnam(SINK_USER)
        (self.conf / "userbase").write_text(
            f"sink {sink.pw_uid}:{sink.pw_gid}:{self.root / 'mailbox'}\n")
        self._write_resolver()

    def _write_resolver(self) -> None:
        """The base's private resolv.conf (``lookup file``: OpenSMTPD's bundled resolver asks
        DNS first by default) and hosts file (the machine's own name on the instance's line:
        without /etc/mailname smtpd names itself by gethostname(3)'s canonical name)."""
        base.write_private_resolver(self.conf, DOMAIN)
        (self.conf / "mailname").write_text(DOMAIN + "\n")

    def _binds(self) -> dict[Path, Path]:
        """Instance path -> compiled-in path, for the daemon's private mount namespace.
        /etc/mailname is bound only if the machine has one (a mount point must exist, and
        we do not create files in the machine's /etc); without it the hosts file names us."""
        binds = {
            self.root / "spool": SPOOL,
            self.root / "empty": CHROOT,
            self.prefix / LIBEXEC.relative_to("/"): LIBEXEC,
            self.root / "run": RUN,
            self.conf / "resolv.conf": Path("/etc/resolv.conf"),
            self.conf / "hosts": Path("/etc/hosts"),
        }
        if Path("/etc/mailname").is_file():
            binds[self.conf / "mailname"] = Path("/etc/mailname")
        return binds

    def _check_configuration(self, binds: dict[Path, Path]) -> None:
        """``smtpd -n`` (configtest) in the same namespace: a bad configuration is reported
        in smtpd's own words before the daemon is started."""
        check = self.root / "configtest.log"
        check.write_bytes(b"")
        test = base.Daemon([str(self.binary), "-n", "-f", str(self.conf / "smtpd.conf")],
                           check, binds=binds)
        test.start()
        assert test.process is not None
        try:
            status = test.process.wait(timeout=30)
        finally:
            test.stop()
        if status != 0:
            raise base.InstallError(f"smtpd -n: the configuration is refused (exit {status})"
                                    + test.tail())

