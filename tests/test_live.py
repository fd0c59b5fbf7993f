"""The app's incremental reads (storage/live.py), its SQL counts (storage/record/counts.py) and
the Pareto front computed from records (storage/front.py), on real SQLite studies."""

from __future__ import annotations

import random

import numpy as np
import optuna
import pytest

from storage import (
    change_mark,
    front_2d,
    front_numbers,
    listing,
    load_study,
    open_storage,
    pareto_numbers,
    rows_of,
    search_progress,
    snapshot,
    trial_rows,
)
from storage.front import non_dominated
from storage.live import StudySnapshot, activity
from tests._app_helpers import seed_study
from tests._pg import temp_database


def _seed(u: str) -> str:
    seed_study(u, "alpha", families=("wavemix", "cxv"), n_done=6, seed=1)
    seed_study(u, "beta", n_done=4, running=1, driver_eta_s=60.0, seed=2)
    return u


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    """Two seeded studies (alpha; beta with a running trial and a live driver), each backend:
    the SQL counts read Optuna's tables directly, so both dialects are exercised."""
    if request.param == "sqlite":
        yield _seed(f"sqlite:///{tmp_path / 'live.db'}")
        return
    with temp_database() as u:
        yield _seed(u)


def test_listing_and_activity_count_without_loading_trials(url):
    assert listing(url) == [("alpha", 6), ("beta", 5)]
    act = activity(url)
    assert set(act) == {"alpha", "beta"} and act["beta"] >= act["alpha"] > 0


def test_the_change_mark_moves_with_every_change_a_page_shows(url):
    before = change_mark(url, "beta")
    assert before.n_trials == 5 and [d[2] for d in before.drivers] == [True]
    assert change_mark(url, "beta").token == before.token  # nothing changed
    study = load_study(url, "beta")
    running = next(t for t in study.trials if t.state.name == "RUNNING")
    open_storage(url).set_trial_intermediate_value(running._trial_id, 2, 0.5)  # an epoch
    after_epoch = change_mark(url, "beta")
    assert after_epoch.token != before.token
    study.tell(running.number, values=[0.5, 12.0])  # it finishes
    done = change_mark(url, "beta")
    assert done.token != after_epoch.token
    study.enqueue_trial({})  # a queued trial
    assert change_mark(url, "beta").token != done.token
    assert change_mark(url, "nope") is None


def test_the_reader_rereads_only_what_changed_and_agrees_with_a_fresh_read(url):
    first = snapshot(url, "beta")
    study = load_study(url, "beta")
    running = next(t for t in study.trials if t.state.name == "RUNNING")
    open_storage(url).set_trial_intermediate_value(running._trial_id, 2, 0.55)
    study.tell(running.number, values=[0.55, 12.0])
    study.tell(study.ask(), values=[0.7, 30.0])
    second = snapshot(url, "beta")
    fresh = StudySnapshot.of(load_study(url, "beta"))
    assert len(second.records) == len(first.records) + 1
    assert second.records == fresh.records
    assert rows_of(second) == trial_rows(load_study(url, "beta"))
    # Finished trials' records are built once and reused.
    assert second.records[0] is first.records[0]


def test_progress_counts_by_the_one_rule(url):
    snap = snapshot(url, "beta")
    trained = sum(1 for r in snap.records if r.finished and r.counts_as_trained)
    assert search_progress(load_study(url, "beta")).finished == trained == 4


@pytest.mark.parametrize("seed", range(4))
def test_the_front_from_records_is_optunas(tmp_path, seed):
    rng = random.Random(seed)
    study = optuna.create_study(directions=["maximize", "minimize"],
                                storage=open_storage(f"sqlite:///{tmp_path / 'f.db'}"),
                                study_name="f")
    for _ in range(60):
        t = study.ask()
        acc, mem = round(rng.random(), 1), float(rng.randint(1, 8))  # ties on purpose
        t.set_constraint("cap", rng.choice([-1.0, -1.0, -1.0, 1.0]))
        study.tell(t, values=[acc, mem])
    snap = StudySnapshot.of(study)
    assert front_numbers(snap.records, snap.record.directions) == pareto_numbers(study)


def test_non_dominated_keeps_ties_and_front_2d_ranks_accuracy_against_cost():
    pts = np.array([[1, 1], [1, 1], [2, 0], [2, 2], [0, 3]], dtype=float)
    assert non_dominated(pts).tolist() == [True, True, True, False, True]
    assert front_2d([(0, 0.9, 100), (1, 0.8, 50), (2, 0.7, 60), (3, 0.95, 500)]) == {0, 1, 3}
