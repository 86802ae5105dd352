"""The Ray Serve backend: the same ScoringEngine as a ``@serve.batch`` deployment on a Ray cluster (``RAY_ADDRESS``).

Optional: needs ``pip install 'peercare[ray]'``. Ray Serve does the micro-batching on the replicas; this
client bounds the coaching work it has in flight (risk work is never shed), as the other backends do. With
``ray_serve_app`` set the client attaches to that already-deployed application (``deploy/ray-serve.yaml``,
shared by every bot process of a fleet); without, it runs its own copy for its lifetime (one process).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import time
import uuid
from typing import Any

from inference.backends.inprocess import _expect
from inference.batching import AdmissionGate
from inference.config import InferenceConfig
from inference.engine import WorkItem, WorkResult
from inference.errors import InferenceError, InferenceShutDown, InferenceUnavailable
from inference.types import Mechanism, Priority, ReplyScore, ReplyScoreRequest, RiskScore, RiskScoreRequest

log = logging.getLogger(__name__)

APP_PREFIX = "peercare-inference"
# Clients alive in this process; the last one to close stops the local Ray it started.
_live_clients = 0
# Serve's application states in which an attaching client waits for the replicas; RUNNING is the one it calls.
_STARTING = ("NOT_STARTED", "DEPLOYING")
ATTACH_POLL_S = 1.0


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.serve") is not None


def model_sources(config: InferenceConfig) -> dict[str, str | None]:
    """Which models a config scores with, named as the bot's settings: what a shared app and its clients share."""
    return {
        **{f"EMPATHY_{m.value}_MODEL": config.empathy_sources[m] for m in Mechanism},
        "RISK_MODEL": config.risk_source,
        "RISK_PROBLEM_TYPE": config.risk_problem_type,
        "the chat recogniser": config.empathy_recogniser,
    }


def models_differ(
    app_name: str, expected: dict[str, str | None], served: dict[str, str | None]
) -> str | None:
    """One line naming the first model the shared app serves differently from this client's settings, or None."""
    for name, value in expected.items():
        if served.get(name) != value:
            return (
                f"RAY_SERVE_APP={app_name} serves other models than this bot's settings: {name} is "
                f"{served.get(name)} there, {value} here (deploy/ray-serve.yaml's args or the bot's settings)"
            )
    return None


def attach_problem(app_name: str, applications: dict[str, tuple[str, str]]) -> str | None:
    """Why a client cannot attach to ``app_name`` (one line), given every app's (status, message); None if RUNNING."""
    if app_name not in applications:
        running = ", ".join(sorted(applications)) or "none"
        return (
            f"RAY_SERVE_APP={app_name}: no such Serve application on the Ray cluster (there: {running}); "
            "deploy it first: serve deploy deploy/ray-serve.yaml"
        )
    status, message = applications[app_name]
    if status != "RUNNING":
        detail = next((line.strip() for line in message.splitlines() if line.strip()), "")
        return f"RAY_SERVE_APP={app_name} is {status} on the Ray cluster" + (f": {detail}" if detail else "")
    return None


def build_app(config: InferenceConfig) -> Any:
    """The Serve application: one deployment whose replicas each load a ScoringEngine once."""
    from ray import serve

    from inference.engine import ScoringEngine

    actor_options: dict[str, Any] = {"num_cpus": config.ray_replica_cpus}
    if config.device == "cuda":
        actor_options["num_gpus"] = 1

    @serve.deployment(name="scorer", ray_actor_options=actor_options, max_ongoing_requests=config.queue_size)
    class PeerCareScorer:
        def __init__(self, config: InferenceConfig) -> None:
            self.sources = model_sources(config)
            self.engine = ScoringEngine.load(config, progress=lambda stage: log.info("inference: %s", stage))

        def model_sources(self) -> dict[str, str | None]:
            return self.sources

        @serve.batch(max_batch_size=config.max_batch_size, batch_wait_timeout_s=config.max_wait_ms / 1000)
        async def score(self, items: list[WorkItem]) -> list[Any]:
            results = await asyncio.to_thread(self.engine.score_batch, items)
            # Errors travel as values: one bad item must not fail its whole batch.
            return [_wire(result) for result in results]

        async def __call__(self, item: WorkItem) -> Any:
            return await self.score(item)

    return PeerCareScorer.bind(config)


def _wire(result: WorkResult) -> Any:
    if isinstance(result, BaseException):
        from inference.backends.protocol import error_to_wire

        return ("error", *error_to_wire(result))
    return result


def _unwire(value: Any) -> WorkResult:
    if isinstance(value, tuple) and len(value) == 3 and value[0] == "error":
        from inference.backends.protocol import error_from_wire

        return error_from_wire((value[1], value[2]))
    return value


class RayServeClient:
    """InferenceClient for a Ray Serve deployment; connects to ``config.ray_address`` or starts a local Ray.

    ``config.ray_serve_app`` set: attaches to that running application (waiting while it deploys) and leaves it
    running on close. Unset: deploys its own copy and deletes it on close.
    """

    def __init__(self, config: InferenceConfig) -> None:
        # The bot owns SIGTERM (run_bot closes everything in order). Ray's crash handler, installed when ray is
        # first imported (ray_available() imports it) unless this is set, would catch it too; the next Serve call
        # (deleting this client's app on the way out) then aborts the process.
        os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
        if not ray_available():
            raise InferenceUnavailable(
                "INFERENCE_BACKEND=ray needs the optional Ray extra: pip install 'peercare[ray]'"
            )
        self.config = config
        self._gate = AdmissionGate(config.queue_size, coaching_wait_s=config.coaching_wait_s)
        self._handle: Any = None
        self._ready = asyncio.Event()
        self._deploying: asyncio.Task | None = None
        self._failure: InferenceUnavailable | None = None
        self._started_ray = False
        self._closed = False
        self.app_name = config.ray_serve_app or f"{APP_PREFIX}-{uuid.uuid4().hex[:8]}"

    @property
    def deploys_app(self) -> bool:
        """Whether this client runs (and deletes) its own Serve app rather than attaching to a shared one."""
        return self.config.ray_serve_app is None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self) -> None:
        global _live_clients
        if self._deploying is None:
            _live_clients += 1
            self._deploying = asyncio.get_running_loop().create_task(self._deploy(), name="inference-ray")

    async def _deploy(self) -> None:
        if self.deploys_app:
            log.info("deploying inference models on Ray Serve; replies wait until they are ready")
        else:
            log.info("attaching to the Ray Serve app %s; replies wait until it is ready", self.app_name)
        try:
            self._handle = await asyncio.to_thread(self._deploy_blocking)
        except Exception as exc:
            what = "Ray Serve deployment" if self.deploys_app else f"RAY_SERVE_APP={self.app_name}"
            self._failure = (
                exc
                if isinstance(exc, InferenceUnavailable)
                else InferenceUnavailable(f"{what} failed: {type(exc).__name__}: {exc}")
            )
            log.error("%s", self._failure)
            self._ready.set()  # wake waiters so they see the failure
            return
        log.info("inference ready on Ray Serve")
        self._ready.set()

    def _deploy_blocking(self) -> Any:
        import ray
        from ray import serve

        if not ray.is_initialized():
            ray.init(
                # A shared app lives on a running cluster: "auto" finds a local one, never starts an empty one.
                # Deploying its own app, the bot starts its own Ray ("local"): left to Ray (None), it joins
                # whatever cluster /tmp/ray last named, and waits for ever when that one is dead.
                address=self.config.ray_address or ("local" if self.deploys_app else "auto"),
                ignore_reinit_error=True,
                log_to_driver=False,
                include_dashboard=False,
            )
            self._started_ray = self.deploys_app and self.config.ray_address is None
        if not self.deploys_app:
            return self._attach_blocking()
        try:
            return serve.run(build_app(self.config), name=self.app_name, route_prefix=None)
        except Exception as exc:
            raise InferenceUnavailable(
                f"Ray Serve deployment failed: {self._failure_detail() or exc}"
            ) from exc

    def _attach_blocking(self) -> Any:
        from ray import serve

        waiting = False
        while True:
            applications = {
                name: (str(getattr(app.status, "value", app.status)), app.message or "")
                for name, app in serve.status().applications.items()
            }
            if applications.get(self.app_name, ("",))[0] not in _STARTING:
                break
            if self._closed:  # stopped while waiting: this thread must not outlive the bot
                raise InferenceShutDown()
            if not waiting:
                log.info("the Serve app %s is still deploying: waiting for its replicas", self.app_name)
                waiting = True
            time.sleep(ATTACH_POLL_S)
        problem = attach_problem(self.app_name, applications)
        if problem is not None:
            raise InferenceUnavailable(problem)
        handle = serve.get_app_handle(self.app_name)
        # One call to a replica: what it loaded, so a bot never scores with models it was not configured for.
        mismatch = models_differ(
            self.app_name, model_sources(self.config), handle.model_sources.remote().result()
        )
        if mismatch is not None:
            raise InferenceUnavailable(mismatch)
        return handle

    def _failure_detail(self) -> str | None:
        """The replica's own error (e.g. which model setting is wrong), from Serve's status message."""
        from ray import serve

        try:
            application = serve.status().applications[self.app_name]
            messages = [d.message for d in application.deployments.values() if d.message]
        except Exception:  # status is best effort; the caller still reports the failure
            return None
        lines = [line.strip() for message in messages for line in message.splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line.split(":", 1)[0]]
        return (errors or lines or [None])[-1]

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def close(self) -> None:
        global _live_clients
        if self._deploying is None or self._closed:
            return
        self._closed = True
        _live_clients -= 1
        if not self._deploying.done():
            self._deploying.cancel()
        await asyncio.to_thread(self._shutdown_blocking, last=_live_clients == 0)
        self._handle = None
        self._failure = InferenceShutDown()

    def _shutdown_blocking(self, *, last: bool) -> None:
        if not self.deploys_app:
            return  # the shared app serves the other bot processes; it outlives this one
        import ray
        from ray import serve

        try:
            if ray.is_initialized():
                serve.delete(self.app_name)
            if last and ray.is_initialized() and (self._started_ray or self.config.ray_address is None):
                serve.shutdown()
                ray.shutdown()
        except Exception as exc:  # shutting down: report, never raise
            log.warning("Ray Serve shutdown: %s", type(exc).__name__)

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore:
        return _expect(await self._submit(request, request.priority), ReplyScore)  # type: ignore[return-value]

    async def score_risk(self, request: RiskScoreRequest) -> RiskScore:
        return _expect(await self._submit(request, Priority.RISK), RiskScore)  # type: ignore[return-value]

    async def _submit(self, item: WorkItem, priority: Priority) -> WorkResult:
        if self._deploying is None:
            raise InferenceUnavailable("the inference client is not started (call start() first)")
        async with self._gate.admit(priority):
            await self._ready.wait()
            if self._failure is not None:
                raise self._failure
            try:
                value = await self._handle.remote(item)
            except InferenceError:
                raise
            except Exception as exc:
                raise InferenceUnavailable(f"Ray Serve request failed: {type(exc).__name__}") from exc
        return _unwire(value)
