"""End-to-end fixtures: the loopback Discord server, and the real PeerCare bot (every cog, a real SQLite file).

Read tests/README.md for the guide. In short::

    async def test_something(e2e):
        post = await e2e.say(e2e.cast.support, e2e.cast.alice, "I had a rough day")
        dm = await e2e.wait_for_dm(e2e.cast.bob)

Override ``e2e_inference_config``, ``e2e_settings`` or ``e2e_extra_extensions`` in a test module to change
the models, settings or extensions the bot starts with.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import shutil
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import discord
import pytest
import yarl

from bot.app import PeerCareBot, create_bot, extension_names
from bot.db.migrate import upgrade_database
from bot.settings import Settings
from inference.backends.inprocess import InProcessClient
from inference.client import InferenceClient
from inference.config import InferenceConfig
from inference.engine import ScoringEngine
from inference.factory import create_inference_client
from inference.types import Mechanism
from tests.discord_server import Channel, DiscordServer, User, WaitTimeout
from tests.e2e._features import Freeze, Hold, eventually
from tests.e2e._log_leaks import logs_hold_no_message_text_or_token  # noqa: F401  (autouse: no text or token in logs)
from tests.e2e._mention_safety import bot_pings_no_one_but_moderators  # noqa: F401  (autouse: no pings)

log = logging.getLogger(__name__)


T = TypeVar("T")

BOT_READY_TIMEOUT_S = 30.0
# Small, so READY follows the single GUILD_CREATE at once (member_count == members sent: no chunking).
GUILD_READY_TIMEOUT_S = 0.05
WATCHED_LOGGERS = ("discord", "bot", "cogs", "inference", "tests.e2e", "apscheduler", "sqlalchemy")
SHUTDOWN_DRAIN_S = 10.0
# Code whose tasks belong to a bot instance (listeners, jobs, sweeps, database work, discord.py internals).
_BOT_CODE = (
    "/bot/",
    "/cogs/",
    "/inference/",
    "/discord/",
    "/apscheduler/",
    "/sqlalchemy/",
    "/aiosqlite/",
    "probe_cog",
)


# The BotRunner whose bot is starting: every task that bot creates inherits it (tasks_tagged_by_runner).
_STARTING_RUNNER: contextvars.ContextVar[BotRunner | None] = contextvars.ContextVar(
    "e2e_starting_runner", default=None
)
_RUNNER_OF_TASK: weakref.WeakKeyDictionary[asyncio.Future[Any], BotRunner] = weakref.WeakKeyDictionary()


def _gateway_connections(bot: PeerCareBot) -> list[Any]:
    """The bot's gateway websockets: one, or one per shard it runs (``bot.ws`` is only the first shard's)."""
    shards = getattr(bot, "shards", None)
    if shards:
        return [info._parent.ws for info in shards.values() if info._parent.ws is not None]
    return [bot.ws] if bot.ws is not None else []


def _is_bot_task(task: asyncio.Task[Any], runner: BotRunner | None = None) -> bool:
    """A task of a bot instance; with ``runner``, of that runner's bot (or of no runner known to have made it)."""
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if code is None or not any(part in code.co_filename for part in _BOT_CODE):
        return False
    return runner is None or _RUNNER_OF_TASK.get(task, runner) is runner


@contextlib.contextmanager
def tasks_tagged_by_runner() -> Iterator[None]:
    """Remember which BotRunner's bot created each task, so one of several bots in this loop can be crashed alone.

    Several bot "processes" (the fleet tests) share the test's event loop; without this a crash would cancel
    every bot's tasks. A task made while a bot runs inherits the context its runner set when starting it.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        task = previous(loop, coro, **kwargs) if previous else asyncio.Task(coro, loop=loop, **kwargs)
        context = kwargs.get("context")
        runner = context.get(_STARTING_RUNNER) if context is not None else _STARTING_RUNNER.get()
        if runner is not None:
            _RUNNER_OF_TASK[task] = runner
        return task

    loop.set_task_factory(factory)
    try:
        yield
    finally:
        loop.set_task_factory(previous)


async def drain_bot_tasks(timeout: float, runner: BotRunner | None = None) -> list[asyncio.Task[Any]]:  # noqa: ASYNC109
    """Wait for a stopped bot's leftover tasks (a job mid-transaction, a sweep) to finish by themselves.

    Cancelling them instead can leave aiosqlite's graceful close pending forever, hanging the loop's teardown.
    Returns the tasks still running after ``timeout``. ``runner``: only that runner's bot's tasks.
    """
    current = asyncio.current_task()
    pending = [
        t for t in asyncio.all_tasks() if t is not current and not t.done() and _is_bot_task(t, runner)
    ]
    for task in pending:
        # A view's timeout task only sleeps (discord.py does not stop views on close): nothing to wait for.
        if "timeout_task" in getattr(task.get_coro(), "__qualname__", ""):
            task.cancel()
    if pending:
        log.info("waiting for %d bot task(s) after close: %s", len(pending), [t.get_coro() for t in pending])
        _, still = await asyncio.wait(pending, timeout=timeout)
        return list(still)
    return []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is end to end: ``pytest -m "not e2e"`` skips it."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


# -- models ----------------------------------------------------------------------------------------------


class TinyModelCache:
    """Tiny real models built once per test session for each distinct set of forced outputs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._built: dict[tuple[Any, ...], tuple[dict[Mechanism, str], str]] = {}

    def sources(
        self,
        *,
        empathy_levels: Mapping[str, int] | int | None = None,
        all_rationale: bool = True,
        risk_forced: Mapping[str, float] | None = None,
    ) -> tuple[dict[Mechanism, str], str]:
        """(empathy sources, risk source). No ``risk_forced``: a model that always says low risk."""
        key = (
            tuple(sorted(empathy_levels.items())) if isinstance(empathy_levels, Mapping) else empathy_levels,
            all_rationale,
            tuple(sorted((risk_forced or {}).items())),
        )
        if key not in self._built:
            from tests.support.tiny_empathy import build_tiny_empathy_models
            from tests.support.tiny_risk import build_tiny_risk_model

            folder = self.folder / f"set-{len(self._built)}"
            empathy = build_tiny_empathy_models(
                folder / "empathy", force_levels=empathy_levels, all_rationale=all_rationale
            )
            risk = build_tiny_risk_model(folder / "risk", forced=risk_forced, low_risk=risk_forced is None)
            self._built[key] = ({Mechanism(m): str(p) for m, p in empathy.items()}, str(risk))
        return self._built[key]

    def config(self, **options: Any) -> InferenceConfig:
        """An in-process CPU config over tiny models; ``options`` as for ``sources``."""
        empathy, risk = self.sources(**options)
        return InferenceConfig(
            backend="inprocess",
            device="cpu",
            empathy_sources=empathy,
            risk_source=risk,
            max_batch_size=8,
            max_wait_ms=1.0,
            cpu_threads=1,
            request_timeout_s=30.0,
        )


class LoadedEngines:
    """Loaded ScoringEngines by config, shared by the bot instances of a session.

    Each bot still gets its own, real in-process client (batcher, readiness, close); only loading the weights
    (0.2-1 s of CPU per start on 2 cores) is done once per configuration.
    """

    def __init__(self) -> None:
        self._engines: dict[str, ScoringEngine] = {}

    def client(self, config: InferenceConfig) -> InferenceClient:
        if config.backend != "inprocess":
            return create_inference_client(config)
        return InProcessClient(config, load_engine=self._load)

    def _load(self, config: InferenceConfig) -> ScoringEngine:
        key = repr(config)
        if key not in self._engines:
            self._engines[key] = ScoringEngine.load(config)
        return self._engines[key]


@pytest.fixture(scope="session")
def loaded_engines() -> LoadedEngines:
    return LoadedEngines()


@pytest.fixture(scope="session")
def tiny_model_cache(tmp_path_factory: pytest.TempPathFactory) -> TinyModelCache:
    return TinyModelCache(tmp_path_factory.mktemp("e2e-models"))


@pytest.fixture
def e2e_inference_config(tiny_model_cache: TinyModelCache) -> InferenceConfig:
    """The bot's models: ER level 2, IP 1, EX 0, every reply token a rationale; risk always low."""
    return tiny_model_cache.config(empathy_levels={"ER": 2, "IP": 1, "EX": 0})


# -- database and settings -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def migrated_database_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head; each test copies it (Alembic runs once per session)."""
    path = tmp_path_factory.mktemp("e2e-db") / "template.db"
    upgrade_database(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def e2e_database_url(migrated_database_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "peercare.db"
    shutil.copyfile(migrated_database_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def e2e_settings() -> dict[str, Any]:
    """Extra Settings fields for the bot (override in a module, e.g. ``{"dev_guild_id": ...}``)."""
    return {}


@pytest.fixture
def e2e_extra_extensions() -> list[str]:
    """Extensions loaded after every cog in cogs/ (e.g. ``["tests.e2e.probe_cog"]``)."""
    return []


# -- the server ------------------------------------------------------------------------------------------


@pytest.fixture
async def discord_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DiscordServer]:
    """A started loopback server; discord.py's REST base and gateway URL point at it for this test only."""
    server = await DiscordServer().start()
    monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway.url))
    try:
        yield server
    finally:
        await server.stop()


# -- the bot ---------------------------------------------------------------------------------------------


class _ErrorLog(logging.Handler):
    """Keeps the errors the bot logs: an exception in a handler is a bug unless a test expects it.

    While a bot is being crashed on purpose, its dying tasks' complaints are not counted.
    """

    def __init__(self, runner: BotRunner) -> None:
        super().__init__(level=logging.ERROR)
        self.runner = runner
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not self.runner.crashing:
            self.records.append(record)


@dataclasses.dataclass
class BotRunner:
    """Starts, stops, crashes and restarts the real bot against ``server`` on one database file."""

    server: DiscordServer
    database_url: str
    inference_config: InferenceConfig
    settings_overrides: dict[str, Any]
    extra_extensions: list[str]
    engines: LoadedEngines
    bot: PeerCareBot | None = None
    token: str = ""
    task: asyncio.Task[None] | None = None
    starts: int = 0
    crashing: bool = False

    def settings(self) -> Settings:
        options: dict[str, Any] = {
            "discord_token": self.token,
            "database_url": self.database_url,
            "dev_guild_id": None,
            "inference_backend": "inprocess",
            "log_level": "INFO",
            **self.settings_overrides,
        }
        return Settings(**options)

    async def start(self) -> PeerCareBot:
        """Start a fresh bot instance (new token, new inference client) and wait for READY."""
        self.token = self.server.new_token()
        inference = self.engines.client(self.inference_config)
        bot = create_bot(
            self.settings(),
            inference=inference,
            extensions=[*extension_names(), *self.extra_extensions],
            guild_ready_timeout=GUILD_READY_TIMEOUT_S,
        )
        self.bot = bot
        self.starts += 1
        starting = _STARTING_RUNNER.set(self)
        try:
            self.task = asyncio.create_task(bot.start(self.token), name=f"peercare-bot-{self.starts}")
        finally:
            _STARTING_RUNNER.reset(starting)
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait(
            {ready, self.task}, timeout=BOT_READY_TIMEOUT_S, return_when="FIRST_COMPLETED"
        )
        if ready not in done:
            ready.cancel()
            if self.task in done:
                self.task.result()  # raises what stopped the bot
            raise WaitTimeout(f"the bot was not ready after {BOT_READY_TIMEOUT_S}s")
        return bot

    async def stop(self) -> None:
        """A clean shutdown (SIGTERM): cogs unload, the scheduler stops, the database closes."""
        bot, task = self.bot, self.task
        if bot is None:
            return
        await bot.close()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, discord.ConnectionClosed):
                await task
        self.bot = self.task = None
        left = await drain_bot_tasks(SHUTDOWN_DRAIN_S, self)
        if left:
            log.warning(
                "bot tasks still running %ss after close: %s", SHUTDOWN_DRAIN_S, [t.get_coro() for t in left]
            )

    async def crash(self) -> None:
        """The process dies: every task of the bot stops where it is; no cog unload, no flushing, no goodbye.

        Then Discord notices (the session ends, the token is refused) and local resources are released.
        """
        bot, task = self.bot, self.task
        if bot is None:
            return
        self.crashing = True
        try:
            await self._kill(bot, task)
        finally:
            self.crashing = False
        self.bot = self.task = None

    async def _kill(self, bot: PeerCareBot, task: asyncio.Task[None] | None) -> None:
        if bot.scheduler.running:
            bot.scheduler.shutdown(wait=False)
        for ws in _gateway_connections(bot):
            if ws._keep_alive is not None:
                # The heartbeat thread would outlive the test's event loop and fail there.
                ws._keep_alive.stop()
        current = asyncio.current_task()
        if task is not None:
            task.cancel()
        # Dying tasks can still start others (an event dispatched from an except block): kill until none are left,
        # before the database closes under them.
        for _ in range(10):
            doomed = [
                t for t in asyncio.all_tasks() if t is not current and not t.done() and _is_bot_task(t, self)
            ]
            if task is not None and not task.done():
                doomed.append(task)
            if not doomed:
                break
            for victim in doomed:
                victim.cancel()
            await asyncio.wait(doomed, timeout=SHUTDOWN_DRAIN_S)
        await self.server.revoke_token(self.token)
        await bot.http.close()
        if bot._inference is not None:
            await bot._inference.close()
        await bot.database.close()

    async def restart(self, *, crash: bool = False) -> PeerCareBot:
        """Stop (or crash) the running bot, then start a fresh instance on the same database."""
        await (self.crash() if crash else self.stop())
        return await self.start()


@contextlib.contextmanager
def tasks_kept_alive() -> Iterator[None]:
    """Hold a strong reference to every task until it finishes.

    asyncio keeps only weak ones, and discord.py keeps none to its event tasks: a handler stuck on a future
    nothing else references (a test "freezing" a step) would be garbage-collected mid-test, and its
    GeneratorExit would surface as a spurious error far from the cause.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    alive: set[asyncio.Future[Any]] = set()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        task = previous(loop, coro, **kwargs) if previous else asyncio.Task(coro, loop=loop, **kwargs)
        alive.add(task)
        task.add_done_callback(alive.discard)
        return task

    loop.set_task_factory(factory)
    try:
        yield
    finally:
        loop.set_task_factory(previous)


@pytest.fixture
async def bot_runner(
    discord_server: DiscordServer,
    e2e_database_url: str,
    e2e_inference_config: InferenceConfig,
    e2e_settings: dict[str, Any],
    e2e_extra_extensions: list[str],
    loaded_engines: LoadedEngines,
) -> AsyncIterator[BotRunner]:
    """A BotRunner that is not started yet (use ``e2e`` for a started bot)."""
    runner = BotRunner(
        discord_server,
        e2e_database_url,
        e2e_inference_config,
        dict(e2e_settings),
        list(e2e_extra_extensions),
        loaded_engines,
    )
    with tasks_kept_alive():
        try:
            yield runner
        finally:
            await runner.stop()


class E2E:
    """One running bot and the loopback server, with the helpers tests use. See tests/README.md."""

    def __init__(self, server: DiscordServer, runner: BotRunner, errors: _ErrorLog) -> None:
        self.server = server
        self.runner = runner
        self.cast = server.cast
        self.faults = server.faults
        self.requests = server.requests
        self.gateway = server.gateway
        self._errors = errors
        self._errors_expected = False
        # Discord-side actions and waits, straight from the server.
        self.say = server.say
        self.edit = server.edit
        self.delete = server.delete
        self.slash = server.slash
        self.click = server.click
        self.submit_modal = server.submit_modal
        self.remove_member = server.remove_member
        self.delete_guild = server.delete_guild
        self.start_thread = server.start_thread
        self.wait_for_dm = server.wait_for_dm
        self.dms_to = server.dms_to
        self.sent_to = server.sent_to
        self.wait_for_message_in = server.wait_for_message_in
        self.wait_for_request = server.wait_for_request
        self.wait_until = server.wait_until
        self.settle = server.settle

    @property
    def bot(self) -> PeerCareBot:
        assert self.runner.bot is not None, "the bot is not running"
        return self.runner.bot

    @property
    def database(self):  # type: ignore[no-untyped-def]
        """The running bot's Database: ``async with e2e.database.session() as session: ...``."""
        return self.bot.database

    async def restart_bot(self, *, crash: bool = False) -> PeerCareBot:
        """A fresh bot instance on the same database; ``crash=True`` kills the old one without shutdown."""
        return await self.runner.restart(crash=crash)

    def dm_channel(self, user: User) -> Channel:
        """The DM channel between the bot and ``user`` (for ``slash(..., channel=...)`` in a DM)."""
        return self.server.world.dm_channel_for(user)

    async def eventually(
        self,
        check: Callable[[], Awaitable[T]],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
        what: str = "a condition",
    ) -> T:
        """Poll an async check (e.g. a database read) until it returns something truthy."""
        return await eventually(check, timeout=timeout, what=what)

    def expect_errors(self) -> None:
        """This test makes the bot log errors on purpose; do not fail it for them."""
        self._errors_expected = True

    def logged_errors(self) -> list[logging.LogRecord]:
        return list(self._errors.records)


@pytest.fixture
async def e2e(discord_server: DiscordServer, bot_runner: BotRunner) -> AsyncIterator[E2E]:
    """The real bot, started and READY against the loopback server. Fails the test if the bot logged errors."""
    errors = _ErrorLog(bot_runner)
    loggers = [logging.getLogger(name) for name in WATCHED_LOGGERS]
    for logger in loggers:
        logger.addHandler(errors)
    harness = E2E(discord_server, bot_runner, errors)
    try:
        await bot_runner.start()
        yield harness
        # Let work the test did not wait for (a last follow-up, a DM) finish before shutting down.
        with contextlib.suppress(WaitTimeout):
            await discord_server.settle(quiet=0.15, timeout=5.0)
        await bot_runner.stop()
    finally:
        for logger in loggers:
            logger.removeHandler(errors)
    unhandled = discord_server.requests.unhandled()
    if unhandled:
        # The bot got a 404 the real Discord would not give: the test proves nothing until the route exists.
        pytest.fail(f"the bot called routes the loopback server lacks (add them to rest.py): {unhandled}")
    if errors.records and not harness._errors_expected:
        details = "\n".join(f"{r.name}: {r.getMessage()}" for r in errors.records[:5])
        pytest.fail(f"the bot logged {len(errors.records)} error(s):\n{details}")


@pytest.fixture
def hold() -> Iterator[Callable[[object, str], Hold]]:
    """``hold(owner, name)``: hold an async callable at its start (``Hold``); every hold is released at the end."""
    holds: list[Hold] = []

    def make(owner: object, name: str) -> Hold:
        holds.append(Hold(owner, name))
        return holds[-1]

    yield make
    for item in holds:
        item.release()


@pytest.fixture
def freeze() -> Iterator[Callable[[object, str], Freeze]]:
    """``freeze(owner, name)``: make an async callable hang forever (``Freeze``); every one is thawed at the end."""
    frozen: list[Freeze] = []

    def make(owner: object, name: str) -> Freeze:
        frozen.append(Freeze(owner, name))
        return frozen[-1]

    yield make
    for item in frozen:
        item.thaw()
