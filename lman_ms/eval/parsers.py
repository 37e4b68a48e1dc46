"""Answer text -> structure, per task. The inverse of ``lman_ms.data.humanins.answers``, tolerant of paraphrase.

Every parser returns a :class:`ParseResult`: ``value`` is what could be read (``None`` when nothing usable was
found, which the metrics count as a parse failure) and ``problems`` lists everything that was skipped or
contradictory, so that a metric never silently scores a guess. Accepted beyond the canonical formats:

* numbers as integers or floats, in ``[...]`` or ``(...)``, separated by commas or spaces;
* extra words around the structure, any order of joints, ``left``/``l``-style joint names;
* class and attribute names written with other spacing, case, punctuation or an inflected form
  (``happy`` for ``happiness``, ``surprised`` for ``surprise``), accepted only when exactly one name matches.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from lman_ms.data.humanins.answers import attribute_phrase, joint_phrase, label_phrase

_NUM = r"[-+]?\d+(?:\.\d+)?"
# A bracketed group of numbers: "[1, 2, 3, 4]", "(1.5 2 3 4)", "[ 1,2 ]". Numbers are separated by one comma or
# semicolon with optional spaces, or by spaces alone: each way of reading the text is the only one, so a group that
# never closes fails in linear time (an optional separator let "[" + 30 digits split in 2^29 ways and hung the
# evaluation on a model's runaway answer).
_GROUP = re.compile(r"[\[(]\s*(" + _NUM + r"(?:(?:\s*[,;]\s*|\s+)" + _NUM + r")*)\s*[\])]")
_NONE = re.compile(r"\b(?:no|zero|none|not\s+any|n't\s+any)\b\s*(?:\w+\s+){0,2}?(?:faces?|persons?|people|"
                   r"pedestrians?|humans?|one)\b|\bnobody\b|\bno\s+one\b", re.I)
_COUNT = re.compile(r"\bthere\s+(?:is|are)\s+(\d+)\b", re.I)
_PERSON = re.compile(r"\b(?:person|people|human|pedestrian)\s*(?:#|no\.?)?\s*(\d+)\s*[:\-.)]", re.I)
_ARTICLES = {"a", "an", "the"}


@dataclass
class ParseResult:
    value: Any
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Something usable was read (problems may still list parts that were skipped)."""
        return self.value is not None


def _numbers(group: str) -> List[float]:
    return [float(v) for v in re.findall(_NUM, group)]


# ---- boxes ----------------------------------------------------------------------------------------------------------
def parse_boxes(text: str) -> ParseResult:
    """``[x1, y1, x2, y2]`` boxes in answer order (the order is their rank, see ``lman_ms.eval.evaluate``).

    Groups of another length and boxes with x2 <= x1 or y2 <= y1 are reported and left out (an inverted box
    may be an xywh box or a typo; guessing which would score a box the model did not give)."""
    problems: List[str] = []
    boxes: List[List[float]] = []
    n_groups = 0
    for m in _GROUP.finditer(text):
        nums = _numbers(m.group(1))
        n_groups += len(nums) == 4
        if len(nums) != 4:
            problems.append(f"skipped {m.group(0)!r}: a box needs 4 numbers, found {len(nums)}")
            continue
        x1, y1, x2, y2 = nums
        if x2 <= x1 or y2 <= y1:
            problems.append(f"skipped {m.group(0)!r}: not [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
            continue
        boxes.append(nums)
    says_none = bool(_NONE.search(text))
    count = _COUNT.search(text)
    if boxes:
        if says_none:
            problems.append("the answer says there is nobody but also gives boxes; the boxes are kept")
        if count and int(count.group(1)) != n_groups:
            problems.append(f"the answer announces {count.group(1)} but gives {n_groups} box(es)")
        return ParseResult(boxes, problems)
    if says_none or (count and int(count.group(1)) == 0):
        return ParseResult([], problems)
    problems.append("no [x1, y1, x2, y2] box and no statement that there is nobody")
    return ParseResult(None, problems)


# ---- name matching (labels, attributes, joints) --------------------------------------------------------------------
_IRREGULAR = {"angry": "anger", "afraid": "fear", "scared": "fear", "glad": "happi", "joy": "happi",
              "joyful": "happi", "unhappy": "sad", "calm": "neutral"}


def _stem(word: str) -> str:
    """A tiny stemmer for names of states: happy/happiness, sad/sadness, surprised/surprise, fearful/fear."""
    w = _IRREGULAR.get(word, word)
    for suffix in ("ness", "ful", "ed", "es", "s", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    return w[:-1] + "i" if w.endswith("y") and len(w) > 3 else w


def _tokens(text: str) -> List[str]:
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in _ARTICLES]


def _compact(tokens: Sequence[str]) -> str:
    return "".join(tokens)


class NameMatcher:
    """Finds which of a list of names a piece of text mentions.

    Names and text are compared as article-free lower-case word sequences, where a run of text words may also
    equal a name written without spaces (``riding bike`` = ``ridingbike``). A first pass wants exact words; only
    if it finds nothing does a second pass compare stems. Matches inside a longer match are dropped
    (``basketball`` inside ``basketball dunk``)."""

    MAX_WINDOW = 8  # longest run of text words compared with one name

    def __init__(self, names: Sequence[str], phrase=label_phrase, aliases: Optional[Dict[int, List[str]]] = None):
        self.names = list(names)
        self.exact: Dict[str, List[int]] = {}     # name without spaces -> indices
        self.stemmed: Dict[tuple, List[int]] = {}  # stems of the name's words -> indices
        for i, n in enumerate(self.names):
            forms = {tuple(_tokens(phrase(n))), tuple(_tokens(n))}
            for a in (aliases or {}).get(i, []):
                forms.add(tuple(_tokens(a)))
            for f in filter(None, forms):
                self.exact.setdefault(_compact(f), []).append(i)
                self.stemmed.setdefault(tuple(_stem(w) for w in f), []).append(i)

    def _spans(self, words: List[str], stem: bool) -> List[Tuple[int, int, int]]:
        keys = [_stem(w) for w in words] if stem else words
        table = self.stemmed if stem else self.exact
        found = []
        for start in range(len(words)):
            for end in range(start + 1, min(len(words), start + self.MAX_WINDOW) + 1):
                key = tuple(keys[start:end]) if stem else _compact(keys[start:end])
                for idx in table.get(key, ()):
                    found.append((start, end, idx))
        return found

    def find(self, text: str) -> List[int]:
        """Indices of the names mentioned in ``text``, in order of appearance, longest matches only."""
        words = _tokens(text)
        spans = self._spans(words, stem=False) or self._spans(words, stem=True)
        kept = [s for s in spans if not any(o[0] <= s[0] and s[1] <= o[1] and (o[1] - o[0]) > (s[1] - s[0])
                                             for o in spans)]
        out: List[int] = []
        for _, _, idx in sorted(kept):
            if idx not in out:
                out.append(idx)
        return out


# ---- class labels ---------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _matcher(names: Tuple[str, ...], kind: str) -> NameMatcher:
    return NameMatcher(names, phrase=attribute_phrase if kind == "attribute" else label_phrase)


def parse_label(text: str, class_names: Sequence[str]) -> ParseResult:
    """The index (in ``class_names``) of the one class the answer names; two different classes is ambiguous."""
    found = _matcher(tuple(class_names), "label").find(text)
    if len(found) == 1:
        return ParseResult(found[0])
    if not found:
        return ParseResult(None, [f"no class name found in {text[:80]!r}"])
    names = ", ".join(repr(class_names[i]) for i in found)
    return ParseResult(None, [f"ambiguous: the answer names several classes ({names})"])


# ---- attributes -----------------------------------------------------------------------------------------------------
_NO_ATTR = re.compile(r"\bnone of the (?:listed )?attributes\b|\bno (?:listed |visible )?attributes\b", re.I)


def parse_attributes(text: str, attribute_names: Sequence[str]) -> ParseResult:
    """A 0/1 vector over ``attribute_names``: 1 for each attribute the answer lists.

    The list is read after the last colon if there is one (``The attributes of this person are: ...``) and split
    at commas, semicolons and ``and``; an item that names no attribute is reported and ignored."""
    if _NO_ATTR.search(text):
        return ParseResult([0] * len(attribute_names))
    body = text.rsplit(":", 1)[1] if ":" in text else text
    matcher = _matcher(tuple(attribute_names), "attribute")
    vector = [0] * len(attribute_names)
    problems: List[str] = []
    items = [s.strip(" .") for s in re.split(r"[,;\n]|\band\b", body) if s.strip(" .")]
    for item in items:
        hits = matcher.find(item)
        if not hits:
            problems.append(f"no attribute name in {item!r}")
        for h in hits:
            vector[h] = 1
    if not any(vector) and problems:
        return ParseResult(None, problems)
    return ParseResult(vector, problems)


# ---- keypoints -----------------------------------------------------------------------------------------------------
_SIDE = {"r": "right", "l": "left", "rt": "right", "lt": "left"}
# The name is at most 60 characters from a word start: unbounded, every letter of a long run of words without
# numbers started a scan to its end (quadratic: 1.6 s for 4,500 characters of a runaway answer).
_JOINT = re.compile(r"\b([A-Za-z][A-Za-z _\-]{0,60}?)\s*[:=]?\s*(?:at\s+)?[\[(]\s*(" + _NUM + r")\s*[, ]\s*(" + _NUM
                    + r")\s*[\])]")


def _joint_key(name: str) -> str:
    words = _tokens(joint_phrase(name))
    return " ".join(_SIDE.get(w, w) for w in words)


def parse_keypoints(text: str, joint_names: Sequence[str]) -> ParseResult:
    """Per person a list of ``[x, y, v]`` over ``joint_names``: v = 1 for a joint the answer gives, else
    ``[0, 0, 0]``. Persons are split at ``Person k:``; without such markers all joints form one person."""
    keys = {_joint_key(n): i for i, n in enumerate(joint_names)}
    problems: List[str] = []
    marks = list(_PERSON.finditer(text))
    if marks:
        chunks = [text[m.end(): (marks[j + 1].start() if j + 1 < len(marks) else len(text))]
                  for j, m in enumerate(marks)]
    else:
        chunks = [text] if _JOINT.search(text) else []
    persons = []
    for p, chunk in enumerate(chunks, 1):
        person = [[0.0, 0.0, 0] for _ in joint_names]
        for m in _JOINT.finditer(chunk):
            words = _joint_key(m.group(1)).split()
            # The joint name is the last, longest known name in the words before the numbers ("the left
            # shoulder is at (3, 4)"): search windows that end latest first.
            idx = next((keys[" ".join(words[a:b])] for b in range(len(words), 0, -1) for a in range(b)
                        if " ".join(words[a:b]) in keys), None)
            if idx is None:
                problems.append(f"person {p}: unknown joint {m.group(1).strip()!r}")
                continue
            if person[idx][2]:
                problems.append(f"person {p}: {joint_names[idx]} given twice; the first is kept")
                continue
            person[idx] = [float(m.group(2)), float(m.group(3)), 1]
        persons.append(person)
    if persons:
        return ParseResult(persons, problems)
    if _NONE.search(text):
        return ParseResult([], problems)
    return ParseResult(None, problems + ["no joint coordinates and no statement that there is nobody"])


# ---- dispatch -------------------------------------------------------------------------------------------------------
def parse_answer(task: str, text: str, target: Dict[str, Any]) -> ParseResult:
    """Parse ``text`` as an answer to a record of ``task``; names come from the record's ``target``."""
    if not isinstance(text, str):
        return ParseResult(None, [f"answer is {type(text).__name__}, not text"])
    if task in ("face_detection", "pedestrian_detection"):
        return parse_boxes(text)
    if task in ("action_recognition", "expression_recognition"):
        return parse_label(text, target["label_names"])
    if task == "pedestrian_attribute":
        return parse_attributes(text, target["attribute_names"])
    if task == "pose_estimation":
        return parse_keypoints(text, target["keypoint_names"])
    raise KeyError(f"no parser for task {task!r}")
