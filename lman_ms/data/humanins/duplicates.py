"""One image listed twice: kept once when both listings agree, refused when they conflict.

Converters merge parts and files: PA-100K folds ``val`` into ``train``, FDDB reads ten fold files, HMDB51 one file
per class, and every list-based source can repeat a line. A sample's ``key`` names one record id, so two samples
with one key are one image (or face, or person) described twice. Edited annotation files that circulate contain
such repeats, sometimes with different labels; written twice, they give one record id two conflicting answers.

The rule, applied by the builder to every converter's ``index()`` through :func:`drop_duplicates`:

* same key, same content (image path, size and target, less the fields a converter lists as provenance, such as
  FDDB's ``fold``): the first listing is kept, the repeats are dropped and counted in ``repeats``;
* same key, different content: an :class:`AnnotationError` at the later listing that names the image, what differs
  and the first listing's place. Under ``on_error="skip"`` it is counted like any other bad item and the image is
  left out entirely, since neither listing can be trusted over the other.

:class:`FirstListing` is the same check for a converter that must compare something other than the final sample
while it reads (HMDB51's train/test flag of a video repeated in one split file).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import AnnotationError, ErrorPolicy
from .sample import Sample


def sample_place(sample: Sample) -> Tuple[str, Optional[int], Optional[str]]:
    """(file, line, key) of the listing a sample came from, as an :class:`AnnotationError` names a place."""
    return sample.source or sample.image, sample.line, sample.meta.get("key")


def place_text(path: str, line: Optional[int] = None, key: Optional[str] = None) -> str:
    text = str(path)
    if line is not None:
        text += f":{line}"
    if key is not None:
        text += f" [{key}]"
    return text


def _difference(first: Dict[str, Any], later: Dict[str, Any]) -> str:
    """The fields that differ, with both values, shortened so that an error stays one readable line."""
    parts = []
    for name in sorted(set(first) | set(later), key=str):
        a, b = first.get(name, "<absent>"), later.get(name, "<absent>")
        if a != b:
            sa, sb = repr(a), repr(b)
            if len(sa) + len(sb) > 160:
                sa, sb = sa[:77] + "...", sb[:77] + "..."
            parts.append(f"{name} {sa} vs {sb}")
    return "; ".join(parts)


class FirstListing:
    """The first place and content of every key seen so far.

    :meth:`check` answers True for a key's first listing and False for a repeat with equal content; a repeat with
    different content raises an :class:`AnnotationError` at the repeat's place that names the first."""

    def __init__(self, what: str = "image"):
        self.what = what
        self._first: Dict[str, Tuple[Dict[str, Any], Tuple[str, Optional[int], Optional[str]]]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._first

    def check(self, key: str, content: Dict[str, Any], path: str, line: Optional[int] = None,
              where: Optional[str] = None, name: Optional[str] = None) -> bool:
        """``content``: what the two listings must agree on, by field name; ``name``: how the error names the
        image (default: the key)."""
        if key not in self._first:
            self._first[key] = (content, (path, line, where))
            return True
        first, first_place = self._first[key]
        if first == content:
            return False
        raise AnnotationError(path, f"{self.what} {name or key} is listed again with different labels "
                                    f"({_difference(first, content)}); first listed at {place_text(*first_place)}",
                              line=line, key=where)


@dataclass
class Deduplicated:
    samples: List[Sample]
    repeats: int = 0                                   # identical repeats dropped
    conflicts: List[str] = field(default_factory=list)  # keys left out under on_error="skip"


def sample_content(sample: Sample, provenance: Sequence[str] = ()) -> Dict[str, Any]:
    """What two listings of one key must agree on: image, size, target (less ``provenance``) and QA pairs."""
    target = {k: v for k, v in sample.target.items() if k not in provenance}
    return {"image": sample.image, "width": sample.width, "height": sample.height, "target": target,
            "qa": sample.qa}


def drop_duplicates(samples: Iterable[Sample], policy: ErrorPolicy, provenance: Sequence[str] = ()
                    ) -> Deduplicated:
    """``samples`` with each key once, in first-listing order (see the module docstring for the rule)."""
    seen = FirstListing()
    kept: Dict[str, Sample] = {}
    conflicts: Dict[str, None] = {}
    repeats = 0
    for s in samples:
        path, line, where = sample_place(s)
        try:
            name = s.image if os.path.splitext(os.path.basename(s.image))[0] == s.key.split("/")[-1] \
                else f"{s.image} (key {s.key})"
            new = seen.check(s.key, sample_content(s, provenance), path, line, where, name=name)
        except AnnotationError as e:
            policy.report(e)           # raises under on_error="raise"
            conflicts[s.key] = None
            continue
        if new:
            kept[s.key] = s
        else:
            repeats += 1
    return Deduplicated([s for k, s in kept.items() if k not in conflicts], repeats, list(conflicts))
