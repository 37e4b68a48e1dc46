"""COCO-style captions that say what is drawn: how many people, their clothes and colours, actions, expressions.

Only facts the picture shows are used, so stage-1 image-text alignment (eq. 3-7) has something true to align.
The expression is named only when one person is in the picture (its face is then large enough to read).
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .person import PersonSpec
from .scene import PersonInstance

ACTION_PHRASES = {
    "standing": "standing", "applauding": "clapping hands", "holding_an_umbrella": "holding an umbrella",
    "jumping": "jumping", "phoning": "talking on a phone", "riding_a_bike": "riding a bike", "running": "running",
    "shooting_an_arrow": "shooting an arrow with a bow", "walking_the_dog": "walking a dog",
    "waving_hands": "waving a hand",
}
EXPRESSION_WORDS = {"Surprise": "surprised", "Fear": "frightened", "Disgust": "disgusted", "Happiness": "smiling",
                    "Sadness": "sad", "Anger": "angry", "Neutral": "calm"}
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
LOWER_WORDS = {"trousers": "trousers", "shorts": "shorts", "skirt": "skirt"}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def outfit(p: PersonSpec) -> str:
    """``a red shirt and blue trousers`` (``a red coat`` when a long coat hides the legs' clothes)."""
    if p.long_coat:
        return f"{_article(p.top)} {p.top} coat"
    top = f"{p.sleeves}-sleeved {p.top} shirt"
    lower = LOWER_WORDS[p.lower_kind]
    return f"{_article(top)} {top} and {p.lower} {lower}" if lower != "skirt" else \
        f"{_article(top)} {top} and {_article(p.lower)} {p.lower} skirt"


def extras(p: PersonSpec) -> List[str]:
    out = []
    if p.hat:
        out.append(f"{_article(p.hat)} {p.hat} hat")
    if p.glasses:
        out.append("glasses")
    if p.bag == "backpack":
        out.append("a backpack")
    elif p.bag == "handbag":
        out.append("a handbag")
    elif p.bag == "shoulder":
        out.append("a shoulder bag")
    return out


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def person_clause(p: PersonSpec, with_expression: bool) -> str:
    adj = EXPRESSION_WORDS[p.expression] + " " if with_expression and p.view == "front" else ""
    return f"{_article(adj or p.noun)} {adj}{p.noun} in {outfit(p)} {ACTION_PHRASES[p.action]}"


def captions_for(rng: np.random.Generator, persons: Sequence[PersonInstance], background: str) -> List[str]:
    """1-5 distinct captions of one scene (COCO gives five per image; fewer here when fewer facts exist)."""
    specs = [q.spec for q in persons]
    n = len(specs)
    pool: List[str] = []
    if n == 0:
        pool = [f"There are no people in this picture {background}.", f"An empty scene {background}.",
                f"Nobody is {background}."]
    elif n == 1:
        p = specs[0]
        noun = p.noun
        pool.append(_cap(person_clause(p, True)) + f" {background}.")
        pool.append(f"One {noun} {ACTION_PHRASES[p.action]} {background}.")
        pool.append(f"{_cap(_article(noun))} {noun} wearing {outfit(p)}.")
        if p.view == "front":
            pool.append(f"A {EXPRESSION_WORDS[p.expression]} {noun} who is {ACTION_PHRASES[p.action]}.")
        else:
            pool.append(f"A {noun} seen from behind, {ACTION_PHRASES[p.action]}.")
        ex = extras(p)
        if ex:
            pool.append(f"A single person with {_join(ex)}, {ACTION_PHRASES[p.action]}.")
        else:
            pool.append(f"A single person {ACTION_PHRASES[p.action]} {background}.")
    else:
        count = COUNT_WORDS[n]
        clauses = [person_clause(p, False) for p in specs]
        pool.append(f"{_cap(count)} people {background}: " + _join(clauses) + ".")
        actions = sorted({ACTION_PHRASES[p.action] for p in specs})
        pool.append(f"A group of {count} people " + _join(actions) + ".")
        pool.append(f"{_cap(count)} persons side by side, wearing " + _join([outfit(p) for p in specs]) + ".")
        pool.append(f"There are {count} people in the picture, " + _join([p.noun for p in specs]) + ".")
        pool.append(f"{_cap(count)} people {background}, one of them {ACTION_PHRASES[specs[0].action]}.")
    k = int(rng.integers(1, len(pool) + 1))
    order = rng.permutation(len(pool))[:k]
    return [pool[i] for i in sorted(order)]


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]
