"""The benchmark replay (bench/replay.py) on a synthetic table: the production sampler,
scheduler and bridge driven on a simulated clock, scored as fixed in advance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.build_table import EPOCHS, GRID, canonical, configs, key
from bench.replay import CHANCE, Table, hypervolume, replay, score


def _synthetic_table() -> Table:
    """Every configuration of the grid with a closed-form curve: wider and deeper is more
    accurate and costs more memory; a learning rate of 3e-3 is best; over 90 MB untrained."""
    rows = []
    for params in configs():
        p = canonical(params)
        fd, depth = p["wavemix.final_dim"], p["wavemix.depth"]
        memory = 4.0 + 0.06 * fd * fd * depth / 8 * p["wavemix.level"]
        quality = 1 - math.exp(-(fd * depth) / 60) - 0.1 * abs(math.log10(p["train.lr"] / 3e-3))
        top = CHANCE + 0.5 * max(0.0, quality)
        val = [CHANCE + (top - CHANCE) * (1 - 0.5 ** (e + 1)) for e in range(EPOCHS)]
        runs = {}
        if memory <= 90:
            runs["0"] = {"val": val, "test": top - 0.01, "epoch_s": 1.0 + memory / 30}
            if len(rows) % 5 == 0:
                runs["1"] = {"val": [v + 0.01 for v in val], "test": top - 0.02,
                             "epoch_s": 1.0 + memory / 30}
        rows.append({"params": p, "memory_mb": memory, "param_count": fd * fd * depth * 10,
                     "runs": runs})
    return Table({"meta": {}, "configs": rows})


@pytest.fixture(scope="module")
def table() -> Table:
    return _synthetic_table()


def test_the_grid_folds_inert_sgd_rates():
    grid = configs()
    assert len(grid) == len({key(p) for p in grid}) == 1280
    a = {**grid[0], "train.switch_epoch": EPOCHS, "train.sgd_lr": GRID["train.sgd_lr"][1]}
    assert key(a) == key({**a, "train.sgd_lr": GRID["train.sgd_lr"][0]})


def test_hypervolume_of_a_staircase():
    assert hypervolume([], 60) == 0.0
    # one point at half the cap, accuracy 0.6: (1 - 0.5) * (0.6 - 0.1)
    assert hypervolume([(30.0, 0.6)], 60) == pytest.approx(0.25)
    # a dominated point and one over the cap add nothing
    assert hypervolume([(30.0, 0.6), (40.0, 0.5), (70.0, 0.9)], 60) == pytest.approx(0.25)
    assert hypervolume([(30.0, 0.6), (15.0, 0.4)], 60) == pytest.approx(0.25 * 0.3 / 0.5 * 0.5
                                                                        + 0.25)


def test_the_front_is_chosen_on_validation_and_scored_on_test():
    # Two finished trials at equal memory: the one with the better validation accuracy is the
    # front, and its (worse) test accuracy is what counts.
    finished = [(4, 30.0, 0.80, 0.40), (8, 30.0, 0.70, 0.60)]
    s = score(finished, true_hv=0.25, cap=60)
    assert s["share"]["48"] == pytest.approx(hypervolume([(30.0, 0.40)], 60) / 0.25)
    assert s["epochs_to_95"] is None


def test_draws_use_the_seeds_and_the_seed_to_seed_noise(table):
    rng = np.random.default_rng(0)
    params = next(c["params"] for c in table.entries.values() if "1" in c["runs"])
    tests = {table.draw(params, rng).test for _ in range(40)}
    assert len(tests) == 2  # both seeds of a retrained configuration are drawn
    once = next(c["params"] for c in table.entries.values()
                if c["runs"] and "1" not in c["runs"])
    assert len({round(table.draw(once, rng).test, 9) for _ in range(40)}) == 2  # seed 0, or 0 + noise


@pytest.mark.parametrize("arm", ["random+fifo", "tpe+pareto_asha"])
def test_a_replayed_search_spends_its_epochs_and_scores_a_share(table, arm):
    r = replay(table, arm, 0, workers=2)
    # (A share may fall with more epochs: the front is chosen on validation, scored on test.)
    assert all(0 < r["share"][h] <= 1.0 + 1e-9 for h in ("48", "96", "192")), r
    assert r["finished"] >= 192 // EPOCHS // 2  # pruned trials spend epochs too
    again = replay(table, arm, 0, workers=2)
    assert again == r  # a seed replays exactly


def test_the_report_pairs_arms_by_seed():
    from bench.replay import paired, report

    st = paired([0.6, 0.7, 0.8, 0.9], [0.5, 0.5, 0.5, 0.5])
    assert st["wins"] == 4 and st["n"] == 4 and st["median_ratio"] == pytest.approx(1.5)
    assert st["ci90"][0] <= st["median_ratio"] <= st["ci90"][1]
    runs = [{"arm": arm, "seed": k, "workers": 2, "epochs_to_95": None,
             "share": {h: share + 0.01 * k for h in ("48", "96", "192")}}
            for k in range(6) for arm, share in (("random+fifo", 0.5), ("tpe+fifo", 0.6))]
    text = report([{"runs": runs}])
    assert "| tpe+fifo | 2 | random+fifo | 192 |" in text and "6 of 6" in text


def test_a_warm_start_reaches_the_new_caps_front_sooner(table):
    # The cost-aware model seeded by a finished search of the same space at 90 MB, then run at
    # the 60 MB cap: on this table it gets to 95% of the true front in fewer epochs than a
    # cold start of the same seed.
    cold = replay(table, "cost_aware+fifo", 0, workers=2)
    warm = replay(table, "cost_aware.warm+fifo", 0, workers=2)
    assert warm["epochs_to_95"] is not None
    assert cold["epochs_to_95"] is None or warm["epochs_to_95"] < cold["epochs_to_95"], (warm, cold)
