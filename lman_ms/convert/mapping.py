"""One table of name rules per model, read both ways (HF -> MindSpore and MindSpore -> HF).

A :class:`Rule` ties one MindSpore parameter pattern to one or more HF patterns; ``{i}`` stands for a layer index.
Most rules are renames; a few carry a transform and its inverse (concatenate q/k/v into mindcv's ``attn.qkv`` and
split it back, add/remove leading unit axes). :class:`WeightMap` streams tensors through the table, holding a
multi-part group only until its last part arrives (q, k and v may sit in different shards), and ends with one error
that lists every unmapped key, incomplete group and missing parameter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from lman_ms.convert.common import CheckpointError, NamedArray

Shape = Tuple[int, ...]


def _identity(parts: List[np.ndarray]) -> np.ndarray:
    return parts[0]


def _identity_inv(arr: np.ndarray) -> List[np.ndarray]:
    return [arr]


@dataclass(frozen=True)
class Rule:
    ms: str                                    # MindSpore name pattern
    hf: Tuple[str, ...]                        # HF name pattern(s), in the order ``to_ms`` takes them
    to_ms: Callable[[List[np.ndarray]], np.ndarray] = _identity
    to_hf: Callable[[np.ndarray], List[np.ndarray]] = _identity_inv

    def prefixed(self, ms_prefix: str, hf_prefix: str) -> "Rule":
        return Rule(ms_prefix + self.ms, tuple(hf_prefix + h for h in self.hf), self.to_ms, self.to_hf)


def rename(ms: str, hf: str) -> Rule:
    return Rule(ms, (hf,))


def concat(ms: str, *hf: str, axis: int = 0) -> Rule:
    """MindSpore tensor = concatenation of the HF parts along ``axis`` (equal parts, e.g. q/k/v -> qkv)."""
    n = len(hf)

    def to_ms(parts):
        shapes = {p.shape for p in parts}
        if len(shapes) != 1:
            raise CheckpointError(f"parts have different shapes {[p.shape for p in parts]}")
        return np.concatenate(parts, axis=axis)

    def to_hf(arr):
        if arr.shape[axis] % n:
            raise CheckpointError(f"axis {axis} of shape {arr.shape} does not split into {n} equal parts")
        return [np.ascontiguousarray(p) for p in np.split(arr, n, axis=axis)]

    return Rule(ms, tuple(hf), to_ms, to_hf)


def unsqueeze(ms: str, hf: str, leading: int) -> Rule:
    """MindSpore tensor = HF tensor with ``leading`` unit axes in front (class/position embeddings of mindcv)."""
    def to_hf(arr):
        if arr.shape[:leading] != (1,) * leading:
            raise CheckpointError(f"expected {leading} leading unit axes, got shape {arr.shape}")
        return [arr.reshape(arr.shape[leading:])]

    return Rule(ms, (hf,), lambda parts: parts[0].reshape((1,) * leading + parts[0].shape), to_hf)


def _regex(pattern: str) -> "re.Pattern[str]":
    return re.compile(re.escape(pattern).replace(re.escape("{i}"), r"(\d+)"))


def _fill(pattern: str, captures: Tuple[str, ...]) -> str:
    for c in captures:
        pattern = pattern.replace("{i}", c, 1)
    return pattern


@dataclass
class WeightMap:
    """Rules plus HF names that are known and deliberately dropped (buffers, the other CLIP tower)."""
    rules: List[Rule]
    ignore_hf: Sequence[str] = ()              # regular expressions, full match
    _compiled: Dict[str, list] = field(default_factory=dict, init=False, repr=False)

    def prefixed(self, ms_prefix: str, hf_prefix: str) -> "WeightMap":
        return WeightMap([r.prefixed(ms_prefix, hf_prefix) for r in self.rules],
                         [re.escape(hf_prefix) + p for p in self.ignore_hf])

    @staticmethod
    def merge(*maps: "WeightMap") -> "WeightMap":
        """Union of maps (rules are tried before ignore patterns, so a name one map ignores can be mapped)."""
        return WeightMap([r for m in maps for r in m.rules], list(dict.fromkeys(p for m in maps for p in m.ignore_hf)))

    def ignoring(self, *patterns: str) -> "WeightMap":
        """The same rules, also dropping HF names that fully match ``patterns`` (regular expressions)."""
        return WeightMap(list(self.rules), list(self.ignore_hf) + list(patterns))

    def _sources(self, direction: str):
        if direction not in self._compiled:
            table = []
            for rid, rule in enumerate(self.rules):
                patterns = rule.hf if direction == "to_ms" else (rule.ms,)
                table.extend((_regex(p), rid, part) for part, p in enumerate(patterns))
            self._compiled[direction] = table
        return self._compiled[direction]

    def _match(self, name: str, direction: str):
        for regex, rid, part in self._sources(direction):
            m = regex.fullmatch(name)
            if m:
                return rid, part, m.groups()
        return None

    def to_ms(self, tensors: Iterable[NamedArray], expected: Optional[Dict[str, Shape]] = None,
              source: str = "checkpoint") -> Iterator[NamedArray]:
        """HF tensors -> MindSpore tensors. ``expected`` maps every MindSpore name to its shape."""
        return self._convert(tensors, "to_ms", expected, source)

    def to_hf(self, tensors: Iterable[NamedArray], expected: Optional[Dict[str, Shape]] = None,
              source: str = "checkpoint") -> Iterator[NamedArray]:
        """MindSpore tensors -> HF tensors. ``expected`` (MindSpore names -> shapes) checks completeness."""
        return self._convert(tensors, "to_hf", expected, source)

    def _convert(self, tensors, direction, expected, source):
        ignore = [re.compile(p) for p in self.ignore_hf] if direction == "to_ms" else []
        pending: Dict[Tuple[int, Tuple[str, ...]], Dict[int, np.ndarray]] = {}
        unmapped, seen, produced = [], set(), set()
        for name, arr in tensors:
            if name in seen:
                raise CheckpointError(f"{source}: key {name!r} appears twice")
            seen.add(name)
            hit = self._match(name, direction)
            if hit is None:
                if not any(p.fullmatch(name) for p in ignore):
                    unmapped.append(name)
                continue
            rid, part, caps = hit
            rule = self.rules[rid]
            group = pending.setdefault((rid, caps), {})
            group[part] = arr
            n_parts = len(rule.hf) if direction == "to_ms" else 1
            if len(group) < n_parts:
                continue
            del pending[(rid, caps)]
            parts = [group[k] for k in range(n_parts)]
            if direction == "to_ms":
                ms_name = _fill(rule.ms, caps)
                hf_names = ", ".join(_fill(h, caps) for h in rule.hf)
                out = _transform(rule.to_ms, parts, f"{source}: {hf_names} -> {ms_name!r}")
                self._check_shape(ms_name, out.shape, expected, source, hf_names)
                produced.add(ms_name)
                yield ms_name, out
            else:
                ms_name = name
                self._check_shape(ms_name, arr.shape, expected, source, ms_name)
                produced.add(ms_name)
                outs = _transform(rule.to_hf, parts[0], f"{source}: {ms_name!r}")
                for hf_pattern, out in zip(rule.hf, outs):
                    yield _fill(hf_pattern, caps), out
        self._final_errors(direction, unmapped, pending, expected, produced, source)

    @staticmethod
    def _check_shape(ms_name, shape, expected, source, from_keys):
        if expected is None:
            return
        if ms_name not in expected:
            raise CheckpointError(f"{source}: {from_keys} maps to {ms_name!r}, which the model does not have")
        want = tuple(expected[ms_name])
        if tuple(shape) != want:
            raise CheckpointError(f"{source}: wrong shape for {from_keys} -> {ms_name!r}: checkpoint gives "
                                  f"{tuple(shape)}, model expects {want}")

    def _final_errors(self, direction, unmapped, pending, expected, produced, source):
        problems = []
        if unmapped:
            problems.append(f"{len(unmapped)} key(s) with no mapping rule: {_short(unmapped)}")
        if pending:
            missing = []
            for (rid, caps), group in pending.items():
                rule = self.rules[rid]
                names = rule.hf if direction == "to_ms" else (rule.ms,)
                missing.extend(_fill(names[k], caps) for k in range(len(names)) if k not in group)
            problems.append(f"incomplete groups, missing part(s): {_short(missing)}")
        if expected is not None:
            missing = sorted(set(expected) - produced)
            if missing:
                problems.append(f"{len(missing)} model parameter(s) left without a value: {_short(missing)}")
        if problems:
            raise CheckpointError(f"{source}: " + "; ".join(problems))


def _transform(fn, value, where):
    """Run a rule's transform; its errors get the file and key names prefixed."""
    try:
        return fn(value)
    except CheckpointError as e:
        raise CheckpointError(f"{where}: {e}") from None


def _short(names: List[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
