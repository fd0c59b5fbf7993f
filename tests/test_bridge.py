"""The driver's bridge on a real (in-memory) Optuna study, without Ray: what it records when a
sampler proposes a candidate that was already trained."""

from __future__ import annotations

import optuna

from engine.protocol import Complete, FinalMetrics, Report, RunInfo
from engine.search.bridge import OptunaBridge
from engine.search.budget import SearchBudget
from engine.space import SearchSpace
from engine.spec import SearchSpec
from storage import TrialRecord
from tests.conftest import tiny_spec_dict


def _finish(bridge: OptunaBridge, tune_id: str, acc: float) -> None:
    metrics = FinalMetrics(val_accuracy=acc, param_count=1000, peak_memory_mb=5.0,
                           memory_method="predicted", violations={"gpu_ram_mb": -507.0},
                           weights_artifact_id="w", probe_logits=[[0.0]], wall_time_s=1.0)
    run = RunInfo(device="cpu", host="test", started_at=0.0)
    bridge.on_trial_complete(tune_id, Report(epoch=3, val_accuracy=acc, run=run,
                                             outcome=Complete(metrics)).to_tune())


def test_a_candidate_proposed_again_reuses_its_result_and_spends_nothing():
    spec = SearchSpec.model_validate(tiny_spec_dict(search={"sampler": "random", "n_trials": 3}))
    study = optuna.create_study(directions=spec.directions)
    same = {"wavemix.final_dim": 8, "wavemix.depth": 1, "wavemix.dropout": 0.1,
            "train.switch_epoch": 2}
    study.enqueue_trial(same)
    study.enqueue_trial(same)
    lines: list[str] = []
    budget = SearchBudget(n_trials=3, budget_epochs=None, epochs_per_trial=3)
    bridge = OptunaBridge(study, SearchSpace(spec), spec.objective_names, budget=budget,
                          progress=lines.append)
    assert isinstance(bridge.suggest("t0"), dict)
    _finish(bridge, "t0", 0.7)
    assert isinstance(bridge.suggest("t1"), dict)  # trial 1 repeats 0: trial 2 is scheduled
    first, again, fresh = (TrialRecord.read(t) for t in study.get_trials())
    assert again.reused_from == 0 and again.values == first.values and not again.counts_as_trained
    assert again.epochs_trained == 0 and again.state.name == "COMPLETE"
    assert fresh.state.name == "RUNNING" and fresh.params != same
    assert budget.read(study).finished == 1  # the repeat is not a trained trial
    assert "trial 1 is trial 0 again: its result reused, no epoch spent" in lines


def test_export_points_a_repeat_to_the_trial_that_trained():
    from optuna.trial import TrialState

    from engine.export.trials import _why_unusable

    r = TrialRecord(number=5, trial_id=5, state=TrialState.COMPLETE, trained=False,
                    reused_from=2, config={"family": "wavemix"})
    assert _why_unusable(r) == ("repeats trial 2 (the same candidate: its result was reused, "
                                "not trained again); choose --trial 2")


def test_a_repeat_shows_its_twins_accuracy_in_the_views():
    from storage import trial_rows

    spec = SearchSpec.model_validate(tiny_spec_dict(search={"sampler": "random", "n_trials": 3}))
    study = optuna.create_study(directions=spec.directions)
    same = {"wavemix.final_dim": 8, "wavemix.depth": 1, "wavemix.dropout": 0.1,
            "train.switch_epoch": 2}
    study.enqueue_trial(same)
    study.enqueue_trial(same)
    bridge = OptunaBridge(study, SearchSpace(spec), spec.objective_names,
                          budget=SearchBudget(n_trials=3, budget_epochs=None, epochs_per_trial=3),
                          progress=lambda _: None)
    bridge.suggest("t0")
    _finish(bridge, "t0", 0.7)
    bridge.suggest("t1")
    rows = trial_rows(study)
    assert rows[1].val_accuracy == rows[0].val_accuracy == 0.7
