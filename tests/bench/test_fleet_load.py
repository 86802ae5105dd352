"""bench/fleet_load.py's layout: guilds spread evenly over the shards, and every process gets crisis posts.

Cheap and CI-safe: no bot process, Ray or PostgreSQL (the run itself needs all three, docs/reliability-load.md).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.discord_traffic import plan_traffic
from bench.fleet_load import PROCESS_SHARDS, SHARD_COUNT, FleetOptions, _add_guilds
from bot.sharding import parse_shard_ids, shard_of
from tests.discord_server import DiscordServer

REPO = Path(__file__).parents[2]
OPTIONS = FleetOptions(database_url="postgresql+asyncpg://unused/db", ray_address="127.0.0.1:6379")


def _process_of(guild_id: int) -> str:
    shard = shard_of(guild_id, SHARD_COUNT)
    return next(ids for ids in PROCESS_SHARDS if shard in parse_shard_ids(ids))


def test_guilds_are_spread_evenly_over_the_shards() -> None:
    guilds, _ = _add_guilds(DiscordServer(), OPTIONS)
    shards = Counter(shard_of(guild.id, SHARD_COUNT) for guild in guilds)
    assert shards == dict.fromkeys(range(SHARD_COUNT), OPTIONS.guilds // SHARD_COUNT)


def test_every_process_gets_crisis_posts() -> None:
    guilds, cast = _add_guilds(DiscordServer(), OPTIONS)
    plan = plan_traffic(
        round(OPTIONS.rate * OPTIONS.seconds),
        channels=len(cast.channels),
        seekers=OPTIONS.seekers,
        responders=OPTIONS.responders,
        crisis_every=OPTIONS.crisis_every,
    )
    crisis = Counter(_process_of(guilds[p.channel].id) for p in plan if p.crisis)
    assert set(crisis) == set(PROCESS_SHARDS) and min(crisis.values()) >= 5


def test_the_run_needs_a_database_and_a_ray_cluster() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.fleet_load"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "--database-url" in done.stderr and "--ray-address" in done.stderr
