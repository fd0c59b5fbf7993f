"""Hostile specs: the holes a tester found, and a seeded fuzzer over mutations of a valid spec.

Every case ends the same way: `engine validate` exits 0 or 2, and a refusal is one short line
with no traceback, in well under a second or two.
"""

from __future__ import annotations

import copy
import math
import random
import time

import pytest
import yaml

from engine.cli import main
from engine.spec import SpecLoader, load_spec
from tests.conftest import ROOT, tiny_spec_dict, write_spec


def _validate(capsys, path, *extra) -> tuple[int, str]:
    rc = main(["validate", str(path), *extra])
    return rc, capsys.readouterr().err.strip()


def _one_line(err: str) -> None:
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert len(err) < 1000, len(err)


@pytest.mark.parametrize("text", [".inf", "-.inf", ".nan", ".NaN", "-.Inf"])
def test_non_finite_numbers_are_refused(tmp_path, capsys, text):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(tiny_spec_dict()).replace("lr: 0.01\n", f"lr: {text}\n", 1))
    rc, err = _validate(capsys, f)
    assert rc == 2
    _one_line(err)
    assert ": train.lr: " in err and "not a finite number" in err, err


def test_non_finite_override_and_range_are_refused(tmp_path, capsys):
    f = write_spec(tmp_path / "s.yaml", tiny_spec_dict())
    rc, err = _validate(capsys, f, "--set", "constraints.gpu_ram_mb=.inf")
    assert rc == 2 and "constraints.gpu_ram_mb" in err and "finite" in err, err
    rc, err = _validate(capsys, f, "--set", "train.lr={type: float, low: 0.001, high: .inf}")
    assert rc == 2 and "train.lr.high" in err and "finite" in err, err


def test_duplicate_key_is_refused_with_both_lines(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("train:\n  lr: 0.01\n  epochs: 3\n  lr: 0.5\n")
    rc, err = _validate(capsys, f)
    assert rc == 2
    _one_line(err)
    assert "'lr' is written twice" in err and "line 4" in err and "first at line 2" in err, err


def test_merge_keys_still_override():
    """`<<: *base` then the same key is YAML's override idiom, not a duplicate."""
    doc = yaml.load("b: &b {x: 1, y: 2}\nc: {<<: *b, x: 3}\n", Loader=SpecLoader)
    assert doc["c"] == {"x": 3, "y": 2}


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["top", "model-param"])
def test_alias_bomb_is_refused_quickly_in_one_line(tmp_path, capsys, where):
    bomb = _alias_bomb()
    assert len(bomb) < 1024
    f = tmp_path / "s.yaml"
    if where == "top":
        f.write_text(bomb)
    else:  # the bomb where a value belongs: the error must not print its expansion
        spec = yaml.safe_dump(tiny_spec_dict(), sort_keys=False)
        f.write_text(bomb.replace("a8: &a8", "x: &a8") + spec.replace("level: 1", "level: *a7"))
    t0 = time.perf_counter()
    rc, err = _validate(capsys, f)
    assert time.perf_counter() - t0 < 5
    assert rc == 2
    _one_line(err)
    assert "aliases expand" in err, err


def test_recursive_alias_is_refused(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("study: &s {name: x, self: *s}\n")
    rc, err = _validate(capsys, f)
    assert rc == 2
    _one_line(err)
    assert "recursive" in err, err


# -- DualOpT's switch epoch: equal to epochs is "AdamW throughout", beyond it an error ------
@pytest.mark.parametrize("switch, ok", [(3, True), (0, True), (4, False),
                                        ({"type": "int", "low": 1, "high": 3}, True),
                                        ({"type": "int", "low": 1, "high": 5}, False)])
def test_switch_epoch_within_epochs(tmp_path, capsys, switch, ok):
    f = write_spec(tmp_path / "s.yaml", tiny_spec_dict(train={"switch_epoch": switch}))
    rc, err = _validate(capsys, f)
    if ok:
        assert rc == 0, err
        return
    assert rc == 2
    _one_line(err)
    assert ": train.switch_epoch: " in err, err
    assert "train.epochs (3)" in err or "train.epochs is 3" in err, err
    assert "at most 3" in err and "AdamW throughout" in err, err


def test_switch_epoch_beyond_epochs_set_by_override_names_it(tmp_path, capsys):
    f = write_spec(tmp_path / "s.yaml", tiny_spec_dict())  # switch 1..2
    rc, err = _validate(capsys, f, "--set", "train.epochs=1")
    assert rc == 2 and "train.switch_epoch" in err and "at most 1" in err, err


def test_searched_sgd_lr_with_adamw_throughout_is_refused(tmp_path, capsys):
    f = write_spec(tmp_path / "s.yaml", tiny_spec_dict(train={
        "switch_epoch": 3, "sgd_lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}))
    rc, err = _validate(capsys, f)
    assert rc == 2 and ": train.sgd_lr: " in err and "SGD never runs" in err, err


def test_switch_is_free_when_not_dualopt_or_plateau(tmp_path, capsys):
    for train in ({"optimizer": "adamw", "switch_epoch": 9},
                  {"switch_epoch": 9, "switch_patience": 2}):
        f = write_spec(tmp_path / "s.yaml", tiny_spec_dict(train=train))
        rc, err = _validate(capsys, f)
        assert rc == 0, err


@pytest.mark.parametrize("name", ["quickstart.yaml", "wavemix_cifar.yaml", "cifar_cpu.yaml"])
def test_shipped_specs_keep_validating(name):
    load_spec(ROOT / "search_spaces" / name)


# -- the storage URL: validate agrees with search -----------------------------------------
@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:",
                                 "sqlite:///file:m?mode=memory&uri=true"])
def test_validate_refuses_in_memory_storage_like_search(tmp_path, capsys, url):
    f = write_spec(tmp_path / "s.yaml", tiny_spec_dict())
    rc, err = _validate(capsys, f, "--storage", url)
    assert rc == 2 and "in-memory" in err, err
    _one_line(err)


def test_sqlite_uri_names_its_file(tmp_path, capsys, monkeypatch):
    from storage.backend import check_search_storage
    from storage.locks import sqlite_path

    monkeypatch.chdir(tmp_path)
    url = check_search_storage("sqlite:///file:real.db?uri=true")
    assert url == f"sqlite:///file:{tmp_path / 'real.db'}?uri=true"
    assert sqlite_path(url) == str(tmp_path / "real.db")
    f = write_spec(tmp_path / "s.yaml", tiny_spec_dict())
    rc, err = _validate(capsys, f, "--storage", "sqlite:///file:real.db?uri=true")
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"], "validate wrote nothing"


# -- the fuzzer: seeded random mutations of a valid spec ----------------------------------
_HOSTILE = [math.inf, -math.inf, math.nan, -1, 0, 2**63, -(2**63), 1e308, True, None, "",
            "x" * 5000, [], {}, [1, [2, [3]]], {"type": "int", "low": 5, "high": 1},
            {"type": "float", "low": 0, "high": math.inf}, {"type": "categorical", "choices": []},
            {"type": "nope"}, {"a": {"b": {"c": {"d": 1}}}}, "3e-3", 0.5, 3, "haar",
            {"type": "int", "low": -(2**40), "high": 2**40}]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _mutate(rng: random.Random, spec: dict) -> dict:
    spec = copy.deepcopy(spec)
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(spec))
        if not paths:
            break
        path = rng.choice(paths)
        parent = spec
        for k in path[:-1]:
            parent = parent[k]
        op = rng.random()
        if op < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif op < 0.25 and isinstance(parent, dict):
            parent[rng.choice(["extra", "lr", "epochs", "type", "x" * 300])] = rng.choice(_HOSTILE)
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(_HOSTILE))
    return spec


def _text_mutation(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    i = rng.randrange(len(lines))
    op = rng.random()
    if op < 0.3:
        lines.insert(i, lines[i])  # a duplicate key (or list item)
    elif op < 0.5:
        lines[i] = lines[i] + " &a"
        lines.insert(rng.randrange(i, len(lines) + 1), lines[i].split(":")[0] + ": *a")
    elif op < 0.7:
        return _alias_bomb(rng.randint(6, 10), rng.randint(6, 12)) + text
    else:
        cut = rng.randrange(len(text))
        return text[:cut] + rng.choice(["\t", ":", "- ", "{", "]", "&x", "*y", "!!python/object"]) + text[cut:]
    return "\n".join(lines) + "\n"


def test_spec_fuzz(tmp_path, capsys):
    """300 seeded mutations (values, keys, YAML text): each validates or is refused in one
    line, exit 2, quickly."""
    rng = random.Random(22)
    base = tiny_spec_dict()
    base_text = yaml.safe_dump(base, sort_keys=False)
    refused = 0
    for n in range(300):
        f = tmp_path / f"fuzz{n}.yaml"
        if n % 3 == 2:
            f.write_text(_text_mutation(rng, base_text))
        else:
            f.write_text(yaml.safe_dump(_mutate(rng, base), sort_keys=False, allow_unicode=True))
        t0 = time.perf_counter()
        try:
            rc = main(["validate", str(f)])
        except SystemExit as e:  # argparse never gets here; a crash would be another type
            rc = e.code
        out = capsys.readouterr()
        assert time.perf_counter() - t0 < 3, (n, f.read_text()[:300])
        assert rc in (0, 2), (n, rc, out.err[-500:], f.read_text()[:300])
        if rc == 2:
            refused += 1
            _one_line(out.err.strip())
    assert refused > 150  # the mutations are hostile: most must be refused
