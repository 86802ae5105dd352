"""SHARD_COUNT / SHARD_IDS, the bot they build, and the one guild-ownership rule (Python and SQL agree)."""

from __future__ import annotations

import os
from pathlib import Path

import discord
import pytest
from dotenv import dotenv_values
from sqlalchemy import BigInteger, Column, MetaData, Table, create_engine, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import PeerCareBot, ShardedPeerCareBot, create_bot
from bot.settings import SettingsError, load_settings
from bot.sharding import GuildOwnership, ShardPlan, parse_shard_ids, shard_of

POSTGRES = "postgresql://peercare@db/peercare"


@pytest.fixture(autouse=True)
def _no_shard_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHARD_COUNT", "SHARD_IDS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("text", "ids"),
    [("0-1", (0, 1)), ("0,2", (0, 2)), (" 3 ", (3,)), ("0-2,5", (0, 1, 2, 5)), ("2,0,2", (0, 2))],
)
def test_shard_ids_are_a_range_or_a_list(text: str, ids: tuple[int, ...]) -> None:
    assert parse_shard_ids(text) == ids


@pytest.mark.parametrize("text", ["a", "1-0", "0,,1", "-1", "0-1-2"])
def test_malformed_shard_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be shard ids"):
        parse_shard_ids(text)


def test_no_shard_settings_is_one_plain_connection_owning_every_guild() -> None:
    settings = load_settings(env_file=None, shard_count="", shard_ids="")
    assert settings.shard_plan == ShardPlan(None, None, sharded=False)
    assert settings.shard_plan.bot_options() == {}
    assert settings.shard_plan.ownership().owns_all


def test_shard_count_alone_runs_every_shard_in_this_process_even_on_sqlite() -> None:
    plan = load_settings(env_file=None, shard_count="4").shard_plan
    assert plan.bot_options() == {"shard_count": 4}
    assert plan.ownership().owns_all


def test_auto_shard_count_asks_discord() -> None:
    plan = load_settings(env_file=None, shard_count="auto").shard_plan
    assert plan.sharded and plan.bot_options() == {"shard_count": None}


def test_a_subset_of_shards_on_postgresql_owns_only_their_guilds() -> None:
    settings = load_settings(env_file=None, shard_count="4", shard_ids="1,3", database_url=POSTGRES)
    plan = settings.shard_plan
    assert plan.is_subset
    assert plan.bot_options() == {"shard_count": 4, "shard_ids": [1, 3]}
    assert plan.ownership() == GuildOwnership(4, frozenset({1, 3}))


def test_all_shard_ids_listed_on_sqlite_is_still_one_process() -> None:
    settings = load_settings(env_file=None, shard_count="2", shard_ids="0-1")
    assert not settings.shard_plan.is_subset
    assert settings.shard_plan.ownership().owns_all


def test_sqlite_refuses_a_subset_of_shards_in_one_line() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(env_file=None, shard_count="4", shard_ids="0-1")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("SHARD_IDS is invalid: runs only some shards")
    assert "SQLite is one process only" in message and "postgresql://" in message


def test_sqlite_refusal_reads_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARD_COUNT", "2")
    monkeypatch.setenv("SHARD_IDS", "1")
    with pytest.raises(SettingsError, match="SHARD_IDS is invalid"):
        load_settings(env_file=None)
    monkeypatch.setenv("DATABASE_URL", POSTGRES)
    assert load_settings(env_file=None).shard_ids == (1,)


@pytest.mark.parametrize(
    ("count", "ids", "complaint"),
    [
        ("", "0", "SHARD_IDS is invalid: needs SHARD_COUNT"),
        ("auto", "0", "SHARD_IDS is invalid: needs SHARD_COUNT"),
        ("2", "0,2", "SHARD_IDS is invalid: shard 2 is not below SHARD_COUNT=2"),
        ("2", "x", "SHARD_IDS is invalid: must be shard ids"),
        ("0", "", "SHARD_COUNT is invalid: must be a number of shards"),
        ("many", "", "SHARD_COUNT is invalid: must be a number of shards"),
    ],
)
def test_bad_shard_settings_name_themselves(count: str, ids: str, complaint: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(env_file=None, shard_count=count, shard_ids=ids, database_url=POSTGRES)
    assert str(refused.value).startswith(complaint)


def test_create_bot_is_a_plain_bot_without_shard_settings() -> None:
    bot = create_bot(load_settings(env_file=None), extensions=[])
    assert type(bot) is PeerCareBot
    assert not isinstance(bot, discord.AutoShardedClient)


def test_create_bot_runs_the_configured_shards() -> None:
    settings = load_settings(env_file=None, shard_count="4", shard_ids="2-3", database_url=POSTGRES)
    bot = create_bot(settings, extensions=[])
    assert isinstance(bot, ShardedPeerCareBot) and isinstance(bot, discord.AutoShardedClient)
    assert bot.shard_count == 4 and bot.shard_ids == [2, 3]
    assert bot.guild_ownership == GuildOwnership(4, frozenset({2, 3}))


# -- the ownership rule -----------------------------------------------------------------------------------

# Real-looking snowflakes spread over time, so every shard gets some.
GUILD_IDS = [(1_200_000_000_000 + 7_919 * n) << 22 | (n % 4096) for n in range(200)]


def test_ownership_is_discords_shard_formula() -> None:
    ownership = GuildOwnership(3, frozenset({0, 2}))
    for guild_id in GUILD_IDS:
        assert ownership.owns(guild_id) == ((guild_id >> 22) % 3 in (0, 2))
    assert all(GuildOwnership.everything().owns(guild_id) for guild_id in GUILD_IDS)


def test_processes_partition_the_guilds_exactly() -> None:
    owners = [GuildOwnership(4, frozenset(ids)) for ids in ({0, 1}, {2}, {3})]
    for guild_id in GUILD_IDS:
        assert sum(o.owns(guild_id) for o in owners) == 1
        assert owners[[0, 0, 1, 2][shard_of(guild_id, 4)]].owns(guild_id)


_TABLE = Table("guilds", MetaData(), Column("guild_id", BigInteger, primary_key=True))
_OWNERSHIPS = [
    GuildOwnership(4, frozenset({1, 3})),
    GuildOwnership(3, frozenset({0})),
    GuildOwnership.everything(),
]


def test_sql_rule_selects_the_same_guilds_on_sqlite() -> None:
    engine = create_engine("sqlite://")
    _TABLE.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(_TABLE), [{"guild_id": g} for g in GUILD_IDS])
        for ownership in _OWNERSHIPS:
            selected = set(
                connection.scalars(select(_TABLE.c.guild_id).where(ownership.where(_TABLE.c.guild_id)))
            )
            assert selected == {g for g in GUILD_IDS if ownership.owns(g)}


@pytest.mark.skipif(
    not os.environ.get("PEERCARE_TEST_POSTGRES_URL"), reason="PEERCARE_TEST_POSTGRES_URL not set"
)
async def test_sql_rule_selects_the_same_guilds_on_postgresql() -> None:
    engine = create_async_engine(os.environ["PEERCARE_TEST_POSTGRES_URL"])
    table = Table("shard_rule_probe", MetaData(), Column("guild_id", BigInteger, primary_key=True))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(table.metadata.drop_all)
            await connection.run_sync(table.metadata.create_all)
            await connection.execute(insert(table), [{"guild_id": g} for g in GUILD_IDS])
            for ownership in _OWNERSHIPS:
                rows = await connection.scalars(
                    select(table.c.guild_id).where(ownership.where(table.c.guild_id))
                )
                assert set(rows) == {g for g in GUILD_IDS if ownership.owns(g)}
            await connection.run_sync(table.metadata.drop_all)
    finally:
        await engine.dispose()


def test_example_env_file_leaves_sharding_off() -> None:
    values = dotenv_values(Path(__file__).parents[2] / ".env.example")
    settings = load_settings(env_file=None, shard_count=values["SHARD_COUNT"], shard_ids=values["SHARD_IDS"])
    assert not settings.shard_plan.sharded
