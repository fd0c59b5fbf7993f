"""bench/gpu_check.py on a CPU machine: its plan, its bookkeeping and its refusals (the CUDA
steps themselves run on a GPU machine; see docs/BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up
_spec.loader.exec_module(gpu_check)


def test_the_plan_fits_in_eight_minutes():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--plan"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert [ln.split()[0] for ln in proc.stdout.splitlines()] == [
        "memory", "oom", "packing", "precision", "cifar", "total"]
    assert sum(s for _, s in gpu_check.PLAN) <= 8 * 60


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_without_cuda_it_refuses_in_one_line(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs a CUDA device" in err and "--plan" in err
    assert not (tmp_path / "x.json").exists()


def test_memory_cases_are_valid_configs_of_registered_families():
    from engine.models import make_config

    for case, config in gpu_check.MEMORY_CASES.items():
        make_config(gpu_check.family_of(case), **config, in_channels=3, image_size=32,
                    num_classes=10)


def test_steps_keep_to_their_allowance_and_a_failure_costs_only_itself():
    now = [0.0]
    seen = {}

    def step(name, used, fail=False):
        def run(budget):
            seen[name] = budget
            now[0] += used
            if fail:
                raise RuntimeError("no such kernel\nsecond line")
            return [gpu_check.Row(name, "x", "1", ok=True)]
        return run

    plan = [("a", 10), ("b", 10), ("c", 10)]
    rows = gpu_check.run_steps(plan, {"a": step("a", 4), "b": step("b", 3, fail=True),
                                      "c": step("c", 1)}, clock=lambda: now[0])
    assert seen == {"a": 10, "b": 16, "c": 23}  # unused time goes to the next step
    assert [(r.step, r.ok) for r in rows] == [("a", True), ("b", False), ("c", True)]
    assert rows[1].figure == "RuntimeError: no such kernel"


def test_table_and_error_figures():
    rows = [gpu_check.Row("memory", "wavemix", "10%", ok=True),
            gpu_check.Row("precision", "bf16 / fp32", "1.8x")]
    table = gpu_check.format_table(rows).splitlines()
    assert table[0] == "| step | what | figure | goal met |"
    assert table[2] == "| memory | wavemix | 10% | yes |" and table[3].endswith("| - |")
    assert gpu_check.memory_error(115.0, 100.0) == pytest.approx(0.15)
    assert gpu_check._step_cifar(60.0, None)[0].figure == "not run: pass --data"
