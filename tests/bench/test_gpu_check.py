"""bench/gpu_check.sh does not rot: its dry run (the same steps on the CPU, quick-sized) passes in CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check import bf16_peak_tflops

REPO = Path(__file__).parents[2]
# The dry run takes about 2 minutes on 2 cores (3 when other work shares them): models load 7 times.
DRY_RUN_LIMIT_S = 400


def test_bf16_peaks_are_looked_up_by_gpu_name() -> None:
    assert bf16_peak_tflops("NVIDIA H200") == bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bf16_peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0
    assert bf16_peak_tflops("Some Future GPU") is None


def test_unknown_arguments_are_refused() -> None:
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--gpu"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "unknown argument --gpu" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(DRY_RUN_LIMIT_S + 20)
def test_dry_run_benchmarks_and_compares_precisions_on_the_cpu(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GPU_CHECK_DRY_RUN": "1",
        "GPU_CHECK_OUT": str(tmp_path),
        "GPU_CHECK_SKIP_INSTALL": "1",  # this interpreter already has everything
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=DRY_RUN_LIMIT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "dry run: CPU" in done.stdout
    inference = json.loads((tmp_path / "inference.json").read_text())
    assert inference["device"] == "cpu"
    assert inference["replies_per_s"] > 0 and inference["p50_ms"] > 0 and inference["p99_ms"] > 0
    assert inference["naive"]["useful_gflop_per_reply"] > 0
    precisions = json.loads((tmp_path / "precisions.json").read_text())
    assert precisions["ok"] is True
    for name in ("bf16", "fp32"):
        run = precisions[name]
        assert run["risk_tier_agreement"] == 1.0 and run["level_agreement"] >= 0.99
        assert run["replies_per_s"] > 0
