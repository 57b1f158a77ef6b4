"""Debian's mail servers side by side on 127.0.0.1, for the published conformance matrix.

Postfix, Exim, OpenSMTPD and Sendmail all Provide and Conflict on ``mail-transport-agent``, so
apt installs one of them at most. Here Postfix is the installed package (as in ``.ci/run``)
and the others are fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into
prefixes of their own. Each runs from its own configuration and spool in a root directory,
listens on 127.0.0.1 only, makes no DNS lookup and delivers nothing off the machine.

    python -m mtas install [NAME ...]          # as root: packages, libraries, system users
    python -m mtas start ROOT [NAME ...]       # each on a free port; ROOT/servers.json
    python -m mtas stop ROOT
    python -m mtas matrix --out docs/matrix    # install, start, run the matrix, stop

Facts: shared/reference/mtas-on-loopback.md and postfix-on-loopback.md.
"""
