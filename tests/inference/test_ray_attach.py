"""The Ray client's two modes, without Ray: attach to a shared Serve app (RAY_SERVE_APP) or deploy a private one.

A stand-in for ``ray``/``ray.serve`` records what the client asks of the cluster; tests/inference/
test_ray_shared_app.py runs the attach mode on a real Ray.
"""

from __future__ import annotations

import dataclasses
import sys
from types import SimpleNamespace
from typing import Any

import pytest

import inference.backends.ray_serve as ray_serve
from inference.backends.ray_serve import RayServeClient, attach_problem, model_sources, models_differ
from inference.config import InferenceConfig
from inference.errors import InferenceUnavailable
from inference.types import RiskScoreRequest

SHARED = "peercare-inference"


class _FakeRay:
    """``ray`` and ``ray.serve`` as the client uses them: one cluster with some apps, every call recorded."""

    def __init__(self, apps: dict[str, str], served: dict[str, str | None]) -> None:
        self.apps = apps
        self.served = served
        self.calls: list[tuple[Any, ...]] = []
        self.connected = False
        self.serve = self

    # ray
    def is_initialized(self) -> bool:
        return self.connected

    def init(self, address: str | None = None, **_: object) -> None:
        self.calls.append(("init", address))
        self.connected = True

    # ray.serve
    def status(self) -> SimpleNamespace:
        return SimpleNamespace(
            applications={name: SimpleNamespace(status=s, message="") for name, s in self.apps.items()}
        )

    def get_app_handle(self, name: str) -> SimpleNamespace:
        self.calls.append(("get_app_handle", name))
        response = SimpleNamespace(result=lambda: self.served)
        return SimpleNamespace(model_sources=SimpleNamespace(remote=lambda: response))

    def run(self, app: object, *, name: str, route_prefix: object) -> object:
        self.calls.append(("run", name))
        return object()

    def delete(self, name: str) -> None:
        self.calls.append(("delete", name))

    def shutdown(self) -> None:
        self.calls.append(("shutdown",))


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> _FakeRay:
    fake = _FakeRay({SHARED: "RUNNING"}, model_sources(InferenceConfig(backend="ray")))
    monkeypatch.setattr(ray_serve, "ray_available", lambda: True)
    monkeypatch.setattr(ray_serve, "build_app", lambda config: "app")
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setitem(sys.modules, "ray.serve", fake)
    return fake


def _config(**options: Any) -> InferenceConfig:
    return InferenceConfig(backend="ray", **options)


async def _start_and_close(client: RayServeClient) -> None:
    await client.start()
    await client.wait_ready()
    await client.close()


def test_without_a_serve_app_the_client_deploys_its_own() -> None:
    client = RayServeClient(_config())
    assert client.deploys_app
    assert client.app_name.startswith("peercare-inference-")


def test_with_a_serve_app_the_client_attaches_to_it_by_name() -> None:
    client = RayServeClient(_config(ray_serve_app=SHARED))
    assert not client.deploys_app
    assert client.app_name == SHARED


async def test_an_attached_client_neither_deploys_nor_deletes_the_shared_app(cluster: _FakeRay) -> None:
    client = RayServeClient(_config(ray_serve_app=SHARED, ray_address="ray://head:10001"))
    await _start_and_close(client)
    assert cluster.calls == [("init", "ray://head:10001"), ("get_app_handle", SHARED)]


async def test_attaching_without_an_address_finds_a_running_cluster_never_starts_one(
    cluster: _FakeRay,
) -> None:
    await _start_and_close(RayServeClient(_config(ray_serve_app=SHARED)))
    assert cluster.calls[0] == ("init", "auto")


async def test_a_deploying_client_without_an_address_starts_its_own_local_ray(cluster: _FakeRay) -> None:
    """Not whatever cluster /tmp/ray last named: a dead one left there made the bot wait for ever."""
    await _start_and_close(RayServeClient(_config()))
    assert cluster.calls[0] == ("init", "local")


async def test_a_deploying_client_runs_and_deletes_its_own_app(cluster: _FakeRay) -> None:
    client = RayServeClient(_config(ray_address="ray://head:10001"))
    await _start_and_close(client)
    assert cluster.calls == [
        ("init", "ray://head:10001"),
        ("run", client.app_name),
        ("delete", client.app_name),
    ]


async def test_attaching_to_a_missing_app_fails_every_request_in_one_line(cluster: _FakeRay) -> None:
    cluster.apps = {"other-app": "RUNNING"}
    client = RayServeClient(_config(ray_serve_app=SHARED))
    await client.start()
    await client.wait_ready()
    with pytest.raises(InferenceUnavailable, match=r"no such Serve application .*there: other-app"):
        await client.score_risk(RiskScoreRequest(1, "hello"))
    await client.close()


async def test_attaching_to_an_app_with_other_models_fails_naming_the_setting(cluster: _FakeRay) -> None:
    cluster.served = {**cluster.served, "EMPATHY_IP_MODEL": "/models/other-ip"}
    client = RayServeClient(_config(ray_serve_app=SHARED))
    await client.start()
    await client.wait_ready()
    with pytest.raises(InferenceUnavailable, match="EMPATHY_IP_MODEL is /models/other-ip there"):
        await client.score_risk(RiskScoreRequest(1, "hello"))
    await client.close()


def test_a_failed_app_is_reported_with_its_first_message_line() -> None:
    problem = attach_problem(
        SHARED, {SHARED: ("DEPLOY_FAILED", "\nModelLoadError: no model at /x\nTraceback")}
    )
    assert (
        problem
        == f"RAY_SERVE_APP={SHARED} is DEPLOY_FAILED on the Ray cluster: ModelLoadError: no model at /x"
    )
    assert attach_problem(SHARED, {SHARED: ("RUNNING", "")}) is None


def test_the_same_models_do_not_differ() -> None:
    sources = model_sources(_config(risk_source="/models/risk"))
    assert models_differ(SHARED, sources, dict(sources)) is None
    other = model_sources(dataclasses.replace(_config(), empathy_recogniser="shipped:empathy-chat"))
    assert "the chat recogniser is shipped:empathy-chat there, None here" in str(
        models_differ(SHARED, model_sources(_config()), other)
    )
