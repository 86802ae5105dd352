"""Bot processes share one Serve app deployed from deploy/ray-serve.yaml (RAY_SERVE_APP): they attach, never own it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from inference.backends.ray_serve import RayServeClient
from inference.config import InferenceConfig
from inference.errors import InferenceUnavailable
from inference.types import Mechanism, ReplyScore, ReplyScoreRequest, RiskScore, RiskScoreRequest
from tests.support.ray_serve_app import NEEDS_RAY, cpu_serve_config, deploy_serve_config

pytestmark = NEEDS_RAY

REPLICAS = 2


@pytest.fixture(scope="module")
def shared_app(tiny_config: Callable[..., InferenceConfig]) -> Iterator[InferenceConfig]:
    """The shipped Serve config on a local Ray over the tiny models, 2 replicas; a bot config attached to it."""
    import ray
    from ray import serve

    bot = tiny_config("ray")
    args = {f"empathy_{m.value.lower()}_model": bot.empathy_sources[m] for m in Mechanism}
    args.update(
        risk_model=bot.risk_source, empathy_recogniser=None, cpu_threads=1, max_batch_size=8, max_wait_ms=2
    )
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        name = deploy_serve_config(cpu_serve_config(replicas=REPLICAS, replica_cpus=0.25, args=args))
        yield dataclasses.replace(bot, ray_serve_app=name)
    finally:
        serve.shutdown()
        ray.shutdown()


async def test_two_clients_score_on_the_one_shared_app_and_leave_it_running(
    shared_app: InferenceConfig,
) -> None:
    from ray import serve

    clients = [RayServeClient(shared_app), RayServeClient(shared_app)]
    for client in clients:
        await client.start()
        await client.wait_ready()
    for n, client in enumerate(clients):
        reply = ReplyScoreRequest(
            10 + n, "I failed my exam today.", 20 + n, "That sounds hard. What happened?"
        )
        assert isinstance(await client.score_reply(reply), ReplyScore)
        assert isinstance(
            await client.score_risk(RiskScoreRequest(30 + n, "I can't do this anymore")), RiskScore
        )
    for client in clients:
        await client.close()

    applications = serve.status().applications
    assert list(applications) == [shared_app.ray_serve_app]  # no app of their own
    scorer = applications[shared_app.ray_serve_app].deployments["scorer"]
    assert applications[shared_app.ray_serve_app].status == "RUNNING"  # closing left it to the other clients
    assert scorer.replica_states.get("RUNNING") == REPLICAS


async def test_a_client_expecting_other_models_is_refused_in_one_line(shared_app: InferenceConfig) -> None:
    client = RayServeClient(dataclasses.replace(shared_app, risk_source="shipped:risk"))
    await client.start()
    await client.wait_ready()
    with pytest.raises(
        InferenceUnavailable, match=r"serves other models than this bot's settings: RISK_MODEL"
    ) as e:
        await client.score_risk(RiskScoreRequest(1, "hello"))
    assert "\n" not in str(e.value)
    await client.close()


async def test_a_client_naming_a_missing_app_is_refused_in_one_line(shared_app: InferenceConfig) -> None:
    client = RayServeClient(dataclasses.replace(shared_app, ray_serve_app="peercare-nowhere"))
    await client.start()
    await client.wait_ready()
    with pytest.raises(
        InferenceUnavailable, match="RAY_SERVE_APP=peercare-nowhere: no such Serve application"
    ):
        await client.score_risk(RiskScoreRequest(1, "hello"))
    await client.close()
