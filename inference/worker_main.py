"""The inference worker process: owns the models (and the GPU), batches requests from the bot's pipe.

Started by ``inference.backends.worker.WorkerClient`` as ``python -m inference.worker_main``. It reads
frames on stdin and writes frames on what was stdout (stdout itself is pointed at stderr so that no
library print can corrupt the protocol). It exits when the bot closes the pipe, so it never outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
import time

from inference.backends import protocol
from inference.memory import HeapTrimmer

log = logging.getLogger(__name__)


def score_then_trim(engine, items: list, trimmer: HeapTrimmer) -> list:
    """Score one batch; every few batches, hand the memory they freed back to the system (``inference.memory``)."""
    try:
        return engine.score_batch(items)
    finally:
        trimmer.batch_done()


class WorkerServer:
    """One worker: load the engine in a thread, answer score frames through a MicroBatcher, beat a heart."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._tasks: set[asyncio.Task] = set()

    def _send(self, op: str, **fields: object) -> None:
        self._writer.write(protocol.encode(op, **fields))

    async def run(self) -> None:
        from inference.batching import MicroBatcher
        from inference.engine import ScoringEngine

        first = await protocol.read_frame(self._reader)
        if first is None or first.get("op") != protocol.CONFIG:
            log.error("inference worker: expected a config frame first; exiting")
            return
        config = first["config"]
        logging.getLogger().setLevel(first.get("log_level", logging.INFO))
        loop = asyncio.get_running_loop()
        heart = loop.create_task(self._heartbeat(config.heartbeat_interval_s))
        engine_box: list[ScoringEngine] = []
        trimmer = HeapTrimmer()
        batcher = MicroBatcher.from_config(
            lambda items: score_then_trim(engine_box[0], items, trimmer), config, name="worker"
        )
        batcher.start()
        loading = loop.create_task(self._load(config, engine_box, batcher))
        try:
            while True:
                frame = await protocol.read_frame(self._reader)
                if frame is None or frame.get("op") == protocol.SHUTDOWN:
                    break
                if frame.get("op") == protocol.SCORE:
                    task = loop.create_task(self._answer(batcher, frame["id"], frame["item"]))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            heart.cancel()
            loading.cancel()
            await batcher.close()
            with contextlib.suppress(Exception):
                await self._writer.drain()

    async def _load(self, config, engine_box: list, batcher) -> None:
        from inference.engine import ScoringEngine

        started = time.perf_counter()

        def progress(stage: str) -> None:
            loop.call_soon_threadsafe(functools.partial(self._send, protocol.PROGRESS, stage=stage))

        loop = asyncio.get_running_loop()
        try:
            engine = await asyncio.to_thread(ScoringEngine.load, config, progress=progress)
        except Exception as exc:
            log.error("inference worker: models failed to load: %s", exc)
            self._send(protocol.LOAD_FAILED, error=protocol.error_to_wire(_as_inference_error(exc)))
            await self._writer.drain()
            return
        engine_box.append(engine)
        batcher.set_ready()
        self._send(
            protocol.READY,
            device=engine.device,
            versions=engine.model_versions,
            load_s=time.perf_counter() - started,
        )

    async def _answer(self, batcher, request_id: int, item) -> None:
        from inference.types import Priority, RiskScoreRequest

        priority = Priority.RISK if isinstance(item, RiskScoreRequest) else item.priority
        try:
            result = await batcher.submit(item, priority=priority)
        except BaseException as exc:  # every request gets an answer, typed
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._send(protocol.ERROR, id=request_id, error=protocol.error_to_wire(exc))
        else:
            self._send(protocol.RESULT, id=request_id, result=result)

    async def _heartbeat(self, interval: float) -> None:
        while True:
            self._send(protocol.HEARTBEAT)
            await self._writer.drain()
            await asyncio.sleep(interval)


def _as_inference_error(exc: Exception) -> Exception:
    from inference.errors import InferenceError

    return exc if isinstance(exc, InferenceError) else InferenceError(f"{type(exc).__name__}: {exc}")


async def _main() -> None:
    loop = asyncio.get_running_loop()
    # The protocol gets its own copy of stdout; fd 1 then points at stderr for any stray print.
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reader = asyncio.StreamReader(limit=protocol.MAX_FRAME_BYTES)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
    )
    transport, flow = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, protocol_out)
    writer = asyncio.StreamWriter(transport, flow, None, loop)
    await WorkerServer(reader, writer).run()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)-7s %(name)s[worker {os.getpid()}]: %(message)s",
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())


if __name__ == "__main__":
    main()
