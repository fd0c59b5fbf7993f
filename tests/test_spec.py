"""Spec validation at the edge: good specs pass, every kind of bad input names its key."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from engine.cli import main
from engine.errors import SpecError
from engine.spec import SearchSpec, load_spec
from tests.conftest import ROOT, tiny_spec_dict, write_spec


@pytest.mark.parametrize("name", ["quickstart.yaml", "wavemix_cifar.yaml"])
def test_shipped_specs_validate(name, capsys):
    assert main(["validate", str(ROOT / "search_spaces" / name)]) == 0
    assert "OK" in capsys.readouterr().out


def test_quickstart_meets_its_promise():
    spec = load_spec(ROOT / "search_spaces" / "quickstart.yaml")
    searched = [k for k, v in spec.model["wavemix"].items() if isinstance(v, dict) or hasattr(v, "type")]
    searched += ["switch_epoch"] if not isinstance(spec.train.switch_epoch, int) else []
    assert spec.search.n_trials >= 8
    assert len(searched) >= 4
    assert spec.objective_names == ["val_accuracy", "peak_memory_mb"]
    assert spec.study.storage.startswith("sqlite:///")


def _mutate(spec: dict, path: str, value) -> dict:
    node = spec
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return spec


# (case id, key path to set, value, key path expected in the message, words expected)
BAD = [
    ("unknown-top-key", "extras", 1, "extras", "unknown key"),
    ("unknown-model-param", "model.wavemix.fnal_dim", 64, "model.wavemix.fnal_dim", "final_dim"),
    ("wrong-type", "train.epochs", "ten", "train.epochs", "integer"),
    ("low-gt-high", "model.wavemix.depth", {"type": "int", "low": 5, "high": 2},
     "model.wavemix.depth", "low (5) must be <= high (2)"),
    ("level-below-1", "model.wavemix.level", 0, "model.wavemix.level", "greater than or equal to 1"),
    ("level-above-max", "model.wavemix.level", 9, "model.wavemix.level", "less than or equal to"),
    ("final-dim-not-div4", "model.wavemix.final_dim", 30, "model.wavemix.final_dim", "multiple of 4"),
    ("final-dim-step-not-div4", "model.wavemix.final_dim", {"type": "int", "low": 8, "high": 32, "step": 6},
     "model.wavemix.final_dim", "multiple of 4"),
    ("unknown-objective", "objectives", [{"metric": "val_acc", "direction": "maximize"}],
     "objectives.0.metric", "val_accuracy"),
    ("duplicate-objective", "objectives", [{"metric": "param_count", "direction": "minimize"}] * 2,
     "objectives", "listed twice"),
    ("unknown-family", "model", {"wavemixx": {"depth": 2}}, "model.wavemixx", "allowed"),
    ("unknown-dataset", "data.dataset", "mnist-nope", "data.dataset", "allowed"),
    ("unknown-sampler", "search.sampler", "cmaes", "search.sampler", "'tpe'"),
    ("negative-lr", "train.lr", -0.1, "train.lr", "greater than 0 (got -0.1)"),
    ("negative-lr-range", "train.lr", {"type": "float", "low": -1.0, "high": 1.0}, "train.lr",
     "greater than 0 (got -1.0)"),
    ("bool-batch-size", "train.batch_size", True, "train.batch_size", "valid integer (got True)"),
    ("float-range-for-int-train", "train.switch_epoch", {"type": "float", "low": 1, "high": 3},
     "train.switch_epoch", "type: int"),
    ("searched-switch-without-dualopt", "train.optimizer", "adamw", "train", "switch_epoch is searched"),
    ("float-range-for-int", "model.wavemix.depth", {"type": "float", "low": 1, "high": 3},
     "model.wavemix.depth", "type: int"),
    ("data-field-in-spec", "model.wavemix.in_channels", 3, "model.wavemix.in_channels", "data set"),
    ("bad-categorical-choice", "model.wavemix.wavelet", {"type": "categorical", "choices": ["haar", "nope"]},
     "model.wavemix.wavelet", "nope"),
    ("missing-section", "search", None, "search", "required"),
    ("no-budget", "search", {"sampler": "tpe", "max_concurrent": 2}, "search", "no budget: set n_trials"),
    ("zero-epoch-budget", "search.budget_epochs", 0, "search.budget_epochs", "greater than or equal to 1"),
    ("cost-aware-settings-other-sampler", "search.cost_aware", {"explore_every": 3}, "search",
     "search.cost_aware is set but search.sampler is 'tpe'"),
    ("cost-aware-unknown-setting", "search.cost_aware", {"explore_evry": 3},
     "search.cost_aware.explore_evry", "unknown key"),
    ("cost-aware-negative-explore", "search.cost_aware", {"explore_every": -1},
     "search.cost_aware.explore_every", "greater than or equal to 0"),
    ("unknown-distribution-type", "model.wavemix.dropout", {"type": "gauss", "low": 0, "high": 1},
     "model.wavemix.dropout", "gauss"),
]


@pytest.mark.parametrize("case,path,value,key,words", BAD, ids=[b[0] for b in BAD])
def test_bad_spec_names_key_and_exits_2(tmp_path, capsys, case, path, value, key, words):
    spec = tiny_spec_dict()
    if value is None:
        del spec[path]
    else:
        _mutate(spec, path, value)
    f = write_spec(tmp_path / "bad.yaml", spec)
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, "one line"
    assert str(f) in err
    assert f": {key}:" in err, err
    assert words in err, err


def test_invalid_yaml_names_line(tmp_path, capsys):
    f = tmp_path / "broken.yaml"
    f.write_text("study:\n  name: x\n  storage: [unclosed\n")
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "invalid YAML" in err and "line" in err and str(f) in err


def test_unreadable_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["validate", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "cannot read" in err


def test_empty_and_non_mapping_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpecError, match="empty"):
        load_spec(empty)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(listy)


def test_bad_spec_writes_nothing_to_storage(tmp_path):
    """The real console script: exit code 2, one line, and no database file created."""
    spec = _mutate(tiny_spec_dict(), "model.wavemix.level", 9)
    f = write_spec(tmp_path / "bad.yaml", spec)
    db = tmp_path / "never.db"
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "search", str(f), "--storage",
                           f"sqlite:///{db}"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "model.wavemix.level" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not db.exists()


def test_spec_is_frozen_and_typo_proof():
    spec = SearchSpec.model_validate(tiny_spec_dict())
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        spec.search.n_trials = 3  # type: ignore[misc]


def test_metric_names_agree_with_storage_schema():
    from typing import get_args

    from engine.spec import Metric
    from storage.schema import METRICS

    assert set(get_args(Metric)) == set(METRICS)


def test_allowed_family_names_agree_with_registry(tmp_path):
    from engine.models import FAMILIES

    for family in FAMILIES.names():
        spec = tiny_spec_dict(model={family: {}})
        load_spec(write_spec(tmp_path / f"{family}.yaml", spec))  # every registered family is accepted
    spec = tiny_spec_dict(model={"not-a-family": {}})
    with pytest.raises(SpecError) as e:
        load_spec(write_spec(tmp_path / "x.yaml", spec))
    for family in FAMILIES.names():
        assert family in str(e.value)


def test_yaml_roundtrip_of_quickstart_is_stable():
    raw = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
    a = SearchSpec.model_validate(raw)
    b = SearchSpec.model_validate(a.model_dump(mode="json"))
    assert a == b


def test_sampler_and_scheduler_choices_agree_with_registries():
    from typing import get_args

    from engine.samplers.registry import SAMPLERS, SCHEDULERS
    from engine.spec import SearchSettings

    fields = SearchSettings.model_fields
    assert set(get_args(fields["sampler"].annotation)) == set(SAMPLERS.names())
    assert set(get_args(fields["scheduler"].annotation)) == set(SCHEDULERS.names())


def test_dataset_names_agree_with_registry(tmp_path):
    from engine.data import DATASETS

    for name in DATASETS.names():
        spec = tiny_spec_dict(data={"dataset": name, "root": str(tmp_path)})
        assert load_spec(write_spec(tmp_path / f"{name}.yaml", spec)).data.dataset == name


# ------------------------------------------------------------- YAML 1.2 floats and overrides

def test_exponent_floats_are_floats(tmp_path):
    """PyYAML (YAML 1.1) reads 3e-3 as a string; specs read it as YAML 1.2 and JSON do."""
    spec = tiny_spec_dict(train={"lr": 0.0, "weight_decay": 0.0})
    text = write_spec(tmp_path / "s.yaml", spec).read_text()
    text = re.sub(r"^(\s+)lr: 0\.0$", r"\1lr: 3e-3", text, count=1, flags=re.M)
    text = re.sub(r"^(\s+)weight_decay: 0\.0$", r"\1weight_decay: 1e-4", text, count=1, flags=re.M)
    assert "lr: 3e-3" in text and "weight_decay: 1e-4" in text
    f = tmp_path / "floats.yaml"
    f.write_text(text)
    loaded = load_spec(f, ["train.sgd_lr=2.5E-2", "model.wavemix.dropout={type: float, low: 1e-3, "
                                                   "high: 2e-1}"])
    assert loaded.train.lr == 0.003 and isinstance(loaded.train.lr, float)
    assert loaded.train.weight_decay == 1e-4 and loaded.train.sgd_lr == 0.025
    assert loaded.model["wavemix"]["dropout"].high == 0.2
    assert yaml.safe_load("3e-3") == "3e-3"  # PyYAML's own loader is left as it was


@pytest.mark.parametrize("text, value", [("3e-3", 0.003), ("1e-4", 1e-4), ("-2.5E+3", -2500.0),
                                         ("1e3", 1000.0), (".5", 0.5), ("-.inf", float("-inf")),
                                         ("3", 3), ("0x1f", 31), ("2001-12-14", None),
                                         ("'3e-3'", "3e-3"), ("1e", "1e"), ("e3", "e3")])
def test_spec_loader_resolves_yaml_12_floats_only(text, value):
    from engine.spec import SpecLoader

    got = yaml.load(text, Loader=SpecLoader)  # safe: SpecLoader is a SafeLoader
    if value is None:  # a date stays a date (and a spec refuses it where a number belongs)
        assert not isinstance(got, int | float | str)
        return
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("line, words", [
    ('lr: "3e-3"', "valid number (got '3e-3')"),  # quoted: a string, strict types refuse it
    ("lr: -2.5E+3", "greater than 0 (got -2500.0)"),  # a float, judged by the field's rule
])
def test_quoted_numbers_stay_strings(tmp_path, capsys, line, words):
    f = write_spec(tmp_path / "s.yaml", tiny_spec_dict())
    f.write_text(f.read_text().replace("lr: 0.01", line, 1))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "train.lr:" in err and words in err


def test_overrides_typed_and_yaml():
    from engine.spec import Override, parse_override

    assert parse_override("study.name=007") == Override("study.name", 7, "--set study.name=007")
    assert parse_override("train.lr=3e-3").value == 0.003
    assert parse_override("data.root=a #b").value == "a"  # YAML: a comment; plain options keep it
    spec = load_spec(ROOT / "search_spaces" / "quickstart.yaml",
                     ["study.name=x", Override("study.name", "007", "--study"),
                      Override("data.root", "my data #1.zip", "--data")])
    assert spec.study.name == "007" and spec.data.root == "my data #1.zip"  # last one wins
    with pytest.raises(SpecError, match="is not KEY=VALUE"):
        parse_override("train.epochs")


def test_an_override_that_breaks_a_rule_is_named(tmp_path):
    from engine.spec import Override

    f = write_spec(tmp_path / "s.yaml", tiny_spec_dict())
    with pytest.raises(SpecError) as e:
        load_spec(f, [Override("study.name", "a b", "--study")])
    assert str(e.value).startswith(f"{f}: study.name: ")
    assert str(e.value).endswith("(got 'a b') (set by --study)") and e.value.key == "study.name"
    with pytest.raises(SpecError, match=r"train\.epochs: .*\(set by --set train\.epochs=0\)$"):
        load_spec(f, ["train.epochs=0"])
    with pytest.raises(SpecError) as e:  # a key no override touched: no blame
        load_spec(write_spec(tmp_path / "t.yaml", tiny_spec_dict(train={"epochs": 0})),
                  ["train.lr=0.1"])
    assert "set by" not in str(e.value)


@pytest.mark.parametrize("budget, planned", [
    ({"n_trials": 40}, 40),
    ({"n_trials": None, "budget_epochs": 30}, 10),
    ({"n_trials": 40, "budget_epochs": 30}, 10),  # the epochs run out first
    ({"n_trials": 5, "budget_epochs": 300}, 5),
    ({"n_trials": None, "budget_epochs": 2}, 1),  # less than one trial: still one
    ({"n_trials": None, "budget_minutes": 20}, 32),
])
def test_planned_trials_is_the_tighter_budget(budget, planned):
    """Samplers size their start-up from planned_trials: with both n_trials and budget_epochs
    set it is the one that ends the search first (3-epoch trials here)."""
    raw = tiny_spec_dict("plan", search=budget)
    raw["search"] = {k: v for k, v in raw["search"].items() if v is not None}
    assert SearchSpec.model_validate(raw).planned_trials == planned
