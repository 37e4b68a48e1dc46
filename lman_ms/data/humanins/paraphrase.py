"""Enlarging the instruction pools by paraphrase (HumanIns, Instruction-Answer Generation).

The paper grows each task's hand-written seeds by "iteratively asking the LLM ... 'Please generate 5 sentences that
have the same meaning as the following: [task description]'" and then refines the replies by hand. Here a
:class:`Paraphraser` is either

* :class:`LLMParaphraser`: any ``generate(prompt: str) -> str`` callable (the project's own decoder, later), sent
  the paper's prompt, its numbered or bulleted reply parsed back into sentences; or
* :class:`RuleBasedParaphraser`: the deterministic fallback that works today: curated synonym and sentence-form
  rewrites that keep the meaning ("image" -> "picture", "Find ..." -> "Please find ...", "This is a face
  detection task." -> "The task here is face detection.").

A sentence with a ``{placeholder}`` (the resolution sentence "The original resolution of this image has a width and
a height of {width} and {height}.") is never sent or rewritten: it is cut off and put back after the paraphrase.
:func:`enlarge_pool` writes the ``{task: [templates]}`` mapping that ``templates.instructions_for(..., pool=...)``
takes; pools hold task descriptions only, since ``instructions_for`` appends the resolution sentence itself.
"""
from __future__ import annotations

import importlib
import itertools
import json
import re
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Tuple

from lman_ms.utils.io import atomic_write_text

from .errors import AnnotationError
from .templates import SEEDS

PARAPHRASE_PROMPT = "Please generate {n} sentences that have the same meaning as the following: {text}"

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class Paraphraser(Protocol):
    def paraphrase(self, text: str, n: int = 5) -> List[str]:
        """Up to ``n`` distinct rewrites of ``text`` with the same meaning (the original excluded)."""
        ...


def split_protected(text: str) -> Tuple[str, str]:
    """(body, tail): the tail starts at the first sentence holding a ``{placeholder}`` and is kept verbatim."""
    sentences = _SENTENCE.split(text.strip())
    for i, s in enumerate(sentences):
        if "{" in s:
            return " ".join(sentences[:i]), " ".join(sentences[i:])
    return " ".join(sentences), ""


def _rejoin(body: str, tail: str) -> str:
    return f"{body} {tail}".strip() if tail else body


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


# ---- rule-based ----------------------------------------------------------------------------------------------------
# Each group is applied as one rewrite; word boundaries and the first letter's case are kept. Only swaps that are
# safe in every seed: "each" -> "every" is not ("the box of each" has no "the box of every"), nor is a bare
# "identify" -> "find" ("Identify what this person is busy with").
_NOUN_SWAPS = {"image": "picture", "picture": "image", "photo": "image", "images": "pictures"}
_VERB_SWAPS = {"identify the": "find the", "identify all": "find all", "identify each": "find each",
               "identify every": "find every", "find": "locate", "locate": "find", "detect": "find", "give": "provide",
               "provide": "give", "list": "give", "tell me": "let me know", "every": "each",
               "recognise": "identify", "recognize": "identify", "mark": "indicate", "spot": "find",
               "output": "give", "analyze": "examine", "analyse": "examine"}
_IMPERATIVE = {"find", "detect", "locate", "identify", "list", "give", "tell", "describe", "estimate", "please", "mark",
               "spot", "output", "perform", "recognise", "recognize", "classify", "analyse", "analyze", "write",
               "provide", "summarise", "summarize", "caption", "draw", "report", "determine", "name"}
# Not "can/could/would ...?": "Tell me, could you ...?" asks twice.
_QUESTION_START = {"what", "which", "where", "how", "who", "is", "are", "does", "do"}


def _swap_words(text: str, table: Dict[str, str]) -> str:
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, table), key=len, reverse=True)) + r")\b", re.I)

    def repl(m: re.Match) -> str:
        new = table[m.group(0).lower()]
        return new[0].upper() + new[1:] if m.group(0)[0].isupper() else new

    return pattern.sub(repl, text)


def _lower_first(s: str) -> str:
    return s if s.startswith("I ") else s[:1].lower() + s[1:]


def _polite(text: str) -> str:
    """The first imperative sentence as a request: "Find ..." -> "Please find ..."; "Please x." -> "Could you x?"."""
    sentences = _SENTENCE.split(text)
    for i, s in enumerate(sentences):
        first = s.split(" ", 1)[0].lower().strip(",")
        if first not in _IMPERATIVE or not s.endswith("."):
            continue
        if first == "please":
            sentences[i] = "Could you " + _lower_first(s.split(" ", 1)[1])[:-1] + "?"
        else:
            sentences[i] = "Please " + _lower_first(s)
        return " ".join(sentences)
    return text


def _task_phrase(text: str) -> str:
    return re.sub(r"\bThis is an? ([\w\s-]+?) task\.", r"The task here is \1.", text, count=1)


def _tell_me(text: str) -> str:
    """A question as a request: "What is ...?" -> "Tell me, what is ...?"."""
    sentences = _SENTENCE.split(text)
    for i, s in enumerate(sentences):
        if s.endswith("?") and s.split(" ", 1)[0].lower() in _QUESTION_START:
            sentences[i] = "Tell me, " + _lower_first(s)
            return " ".join(sentences)
    return text


RULES: Tuple[Callable[[str], str], ...] = (
    lambda t: _swap_words(t, _NOUN_SWAPS), lambda t: _swap_words(t, _VERB_SWAPS), _polite, _task_phrase, _tell_me)


class RuleBasedParaphraser:
    """Every combination of the rewrites in :data:`RULES` (fewest first), distinct results in a fixed order."""

    def paraphrase(self, text: str, n: int = 5) -> List[str]:
        body, tail = split_protected(text)
        seen = {_norm(body)}
        out: List[str] = []
        for size in range(1, len(RULES) + 1):
            for combo in itertools.combinations(RULES, size):
                candidate = body
                for rule in combo:
                    candidate = rule(candidate)
                if _norm(candidate) not in seen:
                    seen.add(_norm(candidate))
                    out.append(_rejoin(candidate, tail))
                if len(out) >= n:
                    return out
        return out


# ---- LLM -----------------------------------------------------------------------------------------------------------
_ITEM = re.compile(r"^\s*(?:\(?\d+[.):]|[-*\u2022])\s*")


def parse_sentences(reply: str) -> List[str]:
    """The sentences of a numbered / bulleted / one-per-line reply; a lead-in line ("Here are ...:") is dropped."""
    out = []
    for line in reply.splitlines():
        line = _ITEM.sub("", line).strip().strip("\"'\u201c\u201d").strip()
        if line and not line.endswith(":"):
            out.append(" ".join(line.split()))
    return out


class LLMParaphraser:
    """The paper's prompt through ``generate(prompt) -> str``. Replies that repeat the input, repeat each other or
    contain braces (which would collide with the placeholders) are dropped."""

    def __init__(self, generate: Callable[[str], str], batch: int = 5):
        self.llm, self.batch = generate, batch

    def paraphrase(self, text: str, n: int = 5) -> List[str]:
        body, tail = split_protected(text)
        seen = {_norm(body)}
        out: List[str] = []
        reply = str(self.llm(PARAPHRASE_PROMPT.format(n=self.batch, text=body)))
        for s in parse_sentences(reply):
            if "{" in s or "}" in s or _norm(s) in seen:
                continue
            seen.add(_norm(s))
            out.append(_rejoin(s, tail))
            if len(out) >= n:
                break
        return out


# ---- pools ---------------------------------------------------------------------------------------------------------
def enlarge_pool(paraphraser: Paraphraser, seeds: Optional[Dict[str, List[str]]] = None, per_template: int = 5,
                 rounds: int = 1, tasks: Optional[Iterable[str]] = None) -> Dict[str, List[str]]:
    """Seeds plus their paraphrases, per task. Round r paraphrases what round r-1 added (the paper's "iteratively");
    the seeds come first and the order is stable, so pools built twice are identical."""
    seeds = SEEDS if seeds is None else seeds
    pool: Dict[str, List[str]] = {}
    for task in (tasks or seeds):
        if task not in seeds:
            raise KeyError(f"no seed instructions for task {task!r}; known: {sorted(seeds)}")
        templates = list(seeds[task])
        seen = {_norm(t) for t in templates}
        frontier = list(templates)
        for _ in range(rounds):
            added = []
            for t in frontier:
                for p in paraphraser.paraphrase(t, per_template):
                    if _norm(p) not in seen:
                        seen.add(_norm(p))
                        added.append(p)
            templates += added
            frontier = added
        pool[task] = templates
    return pool


def check_pool(pool, path: str = "<pool>") -> Dict[str, List[str]]:
    """A pool as ``instructions_for`` needs it, or an error naming the file and the task key."""
    if not isinstance(pool, dict) or not pool:
        raise AnnotationError(path, "expected a non-empty object of task -> list of instructions")
    for task, templates in pool.items():
        if task not in SEEDS:
            raise AnnotationError(path, f"unknown task; known: {sorted(SEEDS)}", key=task)
        if not isinstance(templates, list) or not templates:
            raise AnnotationError(path, "expected a non-empty list of instructions", key=task)
        for i, t in enumerate(templates):
            if not isinstance(t, str) or not t.strip():
                raise AnnotationError(path, "expected a non-empty string", key=f"{task}[{i}]")
            if "{" in t or "}" in t:
                raise AnnotationError(path, "braces are not allowed: instructions_for appends the resolution "
                                            "sentence itself", key=f"{task}[{i}]")
    return pool


def save_pool(path: str, pool: Dict[str, List[str]]) -> None:
    check_pool(pool, path)
    atomic_write_text(path, json.dumps(pool, indent=1, ensure_ascii=False) + "\n")


def load_pool(path: str) -> Dict[str, List[str]]:
    try:
        with open(path, encoding="utf-8") as f:
            pool = json.load(f)
    except FileNotFoundError:
        raise AnnotationError(path, "instruction pool file not found") from None
    except json.JSONDecodeError as e:
        raise AnnotationError(path, f"invalid JSON: {e.msg}", line=e.lineno) from e
    return check_pool(pool, path)


def import_callable(spec: str) -> Callable:
    """``package.module:function`` -> the function (how the tools take an LLM backend)."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected 'package.module:function', got {spec!r}")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:  # a typo in --generator: one line, not an import traceback
        raise ValueError(f"--generator {spec}: {type(e).__name__}: {e}") from e
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj
