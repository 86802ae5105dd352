"""The in-process backend: a thread-pool micro-batcher inside the bot's own process (tests, tiny servers)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from inference.batching import MicroBatcher
from inference.config import InferenceConfig
from inference.engine import ScoringEngine, WorkItem, WorkResult
from inference.errors import InferenceError, InferenceUnavailable
from inference.types import Priority, ReplyScore, ReplyScoreRequest, RiskScore, RiskScoreRequest

log = logging.getLogger(__name__)

EngineLoader = Callable[[InferenceConfig], ScoringEngine]


class InProcessClient:
    """Runs ScoringEngine on a worker thread of this process; the event loop only queues and waits."""

    def __init__(self, config: InferenceConfig, *, load_engine: EngineLoader | None = None) -> None:
        self.config = config
        self._load_engine = load_engine or (lambda cfg: ScoringEngine.load(cfg, progress=_log_progress))
        self._batcher: MicroBatcher[WorkItem, WorkResult] | None = None
        self._loading: asyncio.Task | None = None
        self.engine: ScoringEngine | None = None
        self.load_error: BaseException | None = None

    @property
    def ready(self) -> bool:
        return self._batcher is not None and self._batcher.ready

    async def start(self) -> None:
        if self._batcher is not None:
            return
        self._batcher = MicroBatcher.from_config(self._score_batch, self.config, name="inprocess")
        self._batcher.start()
        self._loading = asyncio.get_running_loop().create_task(self._load(), name="inference-load")

    async def _load(self) -> None:
        assert self._batcher is not None
        log.info("inference models loading in the background; replies wait until they are ready")
        started = time.perf_counter()
        try:
            self.engine = await asyncio.to_thread(self._load_engine, self.config)
        except Exception as exc:
            self.load_error = exc
            log.error("inference models failed to load: %s", exc)
            self._batcher.fail(InferenceUnavailable(f"inference models failed to load: {exc}"))
            return
        log.info("inference ready (in-process) after %.1fs", time.perf_counter() - started)
        self._batcher.set_ready()

    def _score_batch(self, items: list[WorkItem]) -> list[WorkResult]:
        assert self.engine is not None
        return self.engine.score_batch(items)

    async def wait_ready(self) -> None:
        if self._loading is not None:
            await asyncio.shield(self._loading)

    async def close(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if self._batcher is not None:
            await self._batcher.close()

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore:
        result = await self._submit(request, request.priority)
        return _expect(result, ReplyScore)

    async def score_risk(self, request: RiskScoreRequest) -> RiskScore:
        result = await self._submit(request, Priority.RISK)
        return _expect(result, RiskScore)

    async def _submit(self, item: WorkItem, priority: Priority) -> WorkResult:
        if self._batcher is None:
            raise InferenceUnavailable("the inference client is not started (call start() first)")
        return await self._batcher.submit(item, priority=priority)


def _expect(result: object, kind: type) -> object:
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, kind):
        raise InferenceError(f"expected a {kind.__name__}, got a {type(result).__name__}")
    return result


def _log_progress(stage: str) -> None:
    log.info("inference: %s", stage)
