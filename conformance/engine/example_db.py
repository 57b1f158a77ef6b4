"""The example database: the shortest session of each failing finding, kept between runs (and
CI runners) in Hypothesis's example-database storage, so a later run replays it first.

Hypothesis itself runs with ``database=None``: findings are recorded, never raised to it, and
our own replay engine minimises them. What is stored is our replay script (the JSON of a
replay file), under a key per profile and check; any ``hypothesis.database.ExampleDatabase``
will do: a directory (``DirectoryBasedExampleDatabase``, on a shared volume or a CI cache) or
Redis (``hypothesis.extra.redis.RedisExampleDatabase``, for a ``redis://`` URL).
"""

from __future__ import annotations

import json
from itertools import islice

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from conformance.checks import CHECKS
from conformance.engine import replay
from conformance.engine.replay import Script
from conformance.protocol.errors import UsageError

KEY_PREFIX = "smtp-conformance/replay"
MAX_PER_KEY = 20  # sessions replayed per (profile, check), at most
MAX_SCRIPT = 1 << 20  # bytes: a larger value is not one of ours


def open_db(where: str) -> ExampleDatabase:
    """The database at ``where``: a ``redis://`` URL, else a directory (created if need be)."""
    if where.startswith(("redis://", "rediss://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise UsageError(f"--smtp-example-db {where}: a Redis database needs the redis "
                             f"package (pip install redis)") from None
        return RedisExampleDatabase(redis.Redis.from_url(where))
    return DirectoryBasedExampleDatabase(where)


def key(profile: str, check: str) -> bytes:
    return f"{KEY_PREFIX}/{profile}/{check}".encode()


def encode(script: Script) -> bytes:
    return json.dumps(script.to_json(), sort_keys=True).encode()


def decode(value: bytes) -> Script | None:
    """The script stored as ``value``; None if it is not one (too large, another format)."""
    if len(value) > MAX_SCRIPT:
        return None
    try:
        return replay.loads(value)
    except (ValueError, KeyError, TypeError, UnicodeEncodeError):
        return None


def saved(db: ExampleDatabase, profile: str) -> list[Script]:
    """The sessions kept for ``profile``, check by check (at most ``MAX_PER_KEY`` each)."""
    scripts = []
    for check in CHECKS:
        for value in islice(db.fetch(key(profile, check)), MAX_PER_KEY):
            script = decode(value)
            if script is not None and script.profile == profile:
                scripts.append(script)
    return scripts


def keep(db: ExampleDatabase, script: Script) -> None:
    """Save ``script``; past ``MAX_PER_KEY`` sessions for its profile and check, the longest
    are dropped, so the database holds the shortest sessions and stays bounded."""
    where = key(script.profile, script.check)
    db.save(where, encode(script))
    kept = sorted(islice(db.fetch(where), 4 * MAX_PER_KEY), key=len)
    for value in kept[MAX_PER_KEY:]:
        db.delete(where, value)


def forget(db: ExampleDatabase, script: Script) -> None:
    db.delete(key(script.profile, script.check), encode(script))
