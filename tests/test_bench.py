"""The search benchmark's own arithmetic (bench/bench_search.py): the areas and the epoch
counts its tables report, on traces whose answers are worked out by hand."""

from __future__ import annotations

import json

import pytest

from bench.bench_search import BASELINE, Run, hypervolume, report, reprint


def test_hypervolume_is_the_staircase_area():
    # Memory as a fraction of the cap (10 MB): points (0.2, 0.5) and (0.6, 0.8); (0.7, 0.4)
    # is dominated and a point over the cap counts for nothing.
    pts = [(2.0, 0.5), (6.0, 0.8), (7.0, 0.4), (12.0, 0.99)]
    assert hypervolume(pts, 10.0) == pytest.approx(0.4 * 0.5 + 0.4 * 0.8)
    # Against a reference (0.9, 0.3): only the area above 0.3 accuracy and left of 0.9.
    assert hypervolume(pts, 10.0, (0.9, 0.3)) == pytest.approx(0.4 * 0.2 + 0.3 * 0.5)


def _run(arm: str, trace: list[tuple[int, float | None, float | None]]) -> Run:
    return Run("toy", arm, 0, 10.0, trace=trace,
               counts={"trials": len(trace), "infeasible": 0, "seconds": 1.0})


def test_epochs_to_a_target_replays_trials_in_finishing_order():
    run = _run("a", [(4, 5.0, 0.5), (2, None, None), (4, 2.0, 0.6)])
    assert run.epochs == 10
    assert run.epochs_to(0.25, (1.0, 0.0)) == 4  # 0.5 x 0.5 after the first trial
    assert run.epochs_to(0.40, (1.0, 0.0)) == 10  # 0.3 x 0.5 + 0.5 x 0.6 = 0.45 at the third
    assert run.epochs_to(0.50, (1.0, 0.0)) is None  # never


def test_report_counts_the_epochs_an_arm_needs_to_match_random(tmp_path, capsys):
    # The fronts' union is (0.2, 0.5), (0.3, 0.7), (0.6, 0.85): nadir reference (0.64, 0.465).
    # Random's front there is (0.2, 0.5) alone; the arm's first trial, (0.3, 0.7), beats it.
    base = _run(BASELINE, [(4, 2.0, 0.5), (4, 8.0, 0.8)])
    arm = _run("fast", [(4, 3.0, 0.7), (4, 6.0, 0.85)])
    got = report([base, arm], ["fast"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 0 |"))
    assert got["nadir_reference"] == pytest.approx((0.64, 0.465))
    assert got["best_hv"] == pytest.approx(0.3 * 0.235 + 0.04 * 0.385)  # the arm's front
    # 4 of random's 8 epochs to match random's final front.
    assert row.rstrip(" |").endswith("4 (0.50x)")
    # Seed by seed (one seed: the same nadir reference): HV at (cap, 0), random 0.6 x 0.5 +
    # 0.2 x 0.8 = 0.46, the arm 0.3 x 0.7 + 0.4 x 0.85 = 0.55; at the nadir random has
    # 0.44 x 0.035 = 0.0154, the arm 0.0859, and 95% of that needs both of the arm's trials
    # (the first gives 0.34 x 0.235 = 0.0799): 8 epochs; random never gets there.
    seed_row = out.splitlines()[out.splitlines().index(row) + 1:]
    seed_row = next(line for line in seed_row if line.startswith("| 0 |"))
    assert seed_row == ("| 0 | 0.4600 | 0.0154 | >8 | 0.5500 | 1.20x | 0.0859 | 5.58x | 8 | "
                        "<1.00x |")
    # Saved runs print the same tables without running anything.
    saved = tmp_path / "runs.json"
    saved.write_text(json.dumps({"runs": [vars(base), vars(arm)]}))
    reprint([saved])
    assert capsys.readouterr().out.strip() == out.strip()
    # Two files are one benchmark: the baseline both hold is taken once (its points checked),
    # and another file's arm joins the same tables; a copy that differs is said to.
    other = tmp_path / "other.json"
    late = _run("late", [(4, 9.0, 0.6), (4, 2.5, 0.72)])
    other.write_text(json.dumps({"runs": [vars(base), vars(late)]}))
    reprint([saved, other])
    both = capsys.readouterr().out
    assert "toy seed 0 random+fifo: in several files, the same points and epochs" in both
    assert "| late HV nadir |" in both and "| fast HV nadir |" in both
    changed = _run(BASELINE, [(4, 2.0, 0.5), (4, 8.0, 0.81)])
    other.write_text(json.dumps({"runs": [vars(changed)]}))
    reprint([saved, other], seeds=[0])
    assert "DIFFERENT runs" in capsys.readouterr().out
    reprint([saved], seeds=[1])  # no run of seed 1: nothing to print
    assert capsys.readouterr().out == ""
