"""deploy/ray-serve.yaml on a CPU-only Ray cluster: the shipped file with its GPU and size numbers swapped, deployed.

For the tests and the fleet bench (both need Ray: ``pip install 'peercare[ray]'``). Everything else in the file
(the builder, the deployment's name, batching, admission) stays as shipped, so what runs is what operators deploy.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIG = Path(__file__).parents[2] / "deploy" / "ray-serve.yaml"
# The marks of a test that runs a real Ray: slow, `ray`, and skipped where the optional extra is not installed.
NEEDS_RAY = [
    pytest.mark.slow,
    pytest.mark.ray,
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'peercare[ray]')"
    ),
]


def shipped_serve_config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def cpu_serve_config(
    *, replicas: int, replica_cpus: float, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The Serve config on CPUs: ``replicas`` fixed replicas of ``replica_cpus`` CPUs each, no GPU; ``args`` (model
    sources, threads) override the application's."""
    config = shipped_serve_config()
    (application,) = config["applications"]
    application["args"].update({"device": "cpu", "ray_replica_cpus": replica_cpus, **(args or {})})
    (deployment,) = application["deployments"]
    deployment["ray_actor_options"] = {"num_cpus": replica_cpus, "num_gpus": 0}
    deployment["autoscaling_config"].update(
        min_replicas=replicas, initial_replicas=replicas, max_replicas=replicas
    )
    return config


def app_name(config: dict[str, Any]) -> str:
    (application,) = config["applications"]
    return str(application["name"])


def deploy_serve_config(config: dict[str, Any]) -> str:
    """Submit ``config`` to the cluster this process is connected to, as ``serve run CONFIG --non-blocking`` does
    (no dashboard needed, unlike ``serve deploy``); returns the application's name. It deploys in the background."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    client = serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        controller_options=schema.controller_options,
    )
    client.deploy_apps(schema, _blocking=False)
    return app_name(config)
