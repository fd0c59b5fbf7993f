"""Reading a spec's text: a strict YAML loader and ``--set`` overrides (no torch, no pydantic).

The loader is YAML 1.2's floats on PyYAML's safe loader, and refuses what would make a spec
mean something other than what it says or cost more than a spec should: a key written twice,
aliases that expand past ``MAX_EXPANDED_NODES`` values or refer to themselves. Every message
quotes the user's value cut to a readable length (:func:`short_repr`).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from engine.errors import SpecError

__all__ = ["MAX_EXPANDED_NODES", "Override", "SpecLoader", "apply_overrides", "blame_override",
           "parse_override", "short_repr", "shorten"]

_SHOWN_CHARS = 120  # a value quoted in a message is cut here: an error stays one short line
_REPR = reprlib.Repr()  # (keyword arguments need Python 3.12)
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 6, 6, 60, 60


def short_repr(value: Any) -> str:
    """``repr(value)``, cut to a readable length (a huge value must not make a huge line)."""
    text = _REPR.repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def shorten(message: str) -> str:
    """A message quoting a user's value, cut to a readable length."""
    limit = 4 * _SHOWN_CHARS
    return message if len(message) <= limit else message[:limit] + "..."



_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2's float rule (JSON's, plus .inf and .nan). PyYAML implements YAML 1.1, whose floats
# need a dot and a signed exponent, so `3e-3` and `1e-4` load as strings that a strict float
# field refuses. A dot or an exponent is required, so integers stay integers.
_FLOAT_12 = re.compile(r"""^(?: [-+]? (?: [0-9]+ \. [0-9]* | \. [0-9]+ ) (?: [eE] [-+]? [0-9]+ )?
                              | [-+]? [0-9]+ [eE] [-+]? [0-9]+
                              | [-+]? \. (?: inf | Inf | INF )
                              | \. (?: nan | NaN | NAN ) )$""", re.VERBOSE)


MAX_EXPANDED_NODES = 100_000  # a spec is a few hundred values; aliases may not multiply them


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``3e-3``, ``1e-4`` and ``-2.5E+3`` are
    floats. Everything else resolves as with ``yaml.safe_load``; quoted values stay strings
    (so ``lr: "3e-3"`` is still refused by the strict float field).

    Two things PyYAML lets through are refused, each as a YAML error with its line: a key
    written twice in one mapping (PyYAML keeps the last silently), and a document whose
    aliases (``*name``) expand to more than ``MAX_EXPANDED_NODES`` values (a kilobyte of
    nested aliases can stand for billions of values, which any walk or message would expand).
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._expanded: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        alias = self.check_event(yaml.AliasEvent)
        mark = self.peek_event().start_mark
        node = super().compose_node(parent, index)
        if alias:
            if id(node) not in self._expanded:
                raise yaml.composer.ComposerError(
                    None, None, "an alias refers to a node that contains it (a recursive "
                    "structure); write the values out", mark)
            return node
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        size = 1
        for child in children:
            size += self._expanded[id(child)]
        if size > MAX_EXPANDED_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand this document to more than {MAX_EXPANDED_NODES:,} "
                "values; a spec needs a few hundred: write the values out", node.start_mark)
        self._expanded[id(node)] = size
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` then a key: the key overrides, as intended
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: the base constructor reports it
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {short_repr(key)} is written twice in one mapping "
                        f"(first at line {first.line + 1}); keep one of them",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


# Each first character's float rule is swapped in place, so the order in which int, float and
# timestamp are tried is unchanged; SafeLoader's own table is not touched.
SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, _FLOAT_12 if tag == _FLOAT_TAG else rx) for tag, rx in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


@dataclass(frozen=True)
class Override:
    """One spec value set from the command line.

    Attributes:
        key: Dotted key path, e.g. ``study.name``.
        value: The value as it goes into the document. Plain options (``--study``, ``--data``,
            ``--storage``) pass their text unchanged, never parsed: ``--study 007`` is the
            name "007" and ``--data "my data #1.zip"`` the whole path.
        origin: Where the value came from (``--study``, ``--set train.lr=3e-3``), named in
            the message when the value breaks a rule.
    """

    key: str
    value: Any
    origin: str = "--set"


def parse_override(item: str, path: str = "<spec>") -> Override:
    """An ``--set KEY=VALUE`` item; the value is parsed as YAML (``2``, ``3e-3``, ``[a, b]``).

    Raises:
        SpecError: not ``KEY=VALUE``, or the value is not valid YAML.
    """
    key, sep, text = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError(f"override {item!r} is not KEY=VALUE (e.g. train.epochs=2)", path=path)
    try:
        value = yaml.load(text, Loader=SpecLoader)  # safe: SpecLoader is a SafeLoader
    except yaml.YAMLError:
        raise SpecError(f"override value {text!r} is not valid YAML; fix: quote it as YAML "
                        "would, or use the plain option if there is one", path=path,
                        key=key) from None
    return Override(key, value, f"--set {item}")


def apply_overrides(raw: Any, overrides: Sequence[Override], path: str) -> Any:
    """Set each override's value at its dotted key in a raw spec document (in order)."""
    for o in overrides:
        parts = o.key.split(".")
        if not all(parts):
            raise SpecError(f"{o.origin}: {o.key!r} is not a dotted key path (e.g. "
                            "train.epochs)", path=path)
        node = raw
        for part in parts[:-1]:
            if not isinstance(node, dict):
                raise SpecError(f"cannot set {o.key!r}: {part!r} is inside a scalar", path=path,
                                key=o.key)
            node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"cannot set {o.key!r}: its parent is not a mapping", path=path,
                            key=o.key)
        node[parts[-1]] = o.value
    return raw


def blame_override(err: SpecError, overrides: Sequence[Override], path: str) -> SpecError:
    """``err`` with the option that set the broken key named, when an override set it."""
    key = err.key or ""
    origin = next((o.origin for o in reversed(overrides)
                   if key == o.key or key.startswith(o.key + ".")), None)
    if origin is None:
        return err
    message = str(err).removeprefix(f"{path}: {key}: ")
    return SpecError(f"{message} (set by {origin})", path=path, key=key)


