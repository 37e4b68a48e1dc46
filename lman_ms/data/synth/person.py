"""What a SynthHuman person is: appearance, expression and action, sampled from a seeded generator.

Every attribute here is something the renderer draws so that it is visible at 64x64 input: long hair for
``female``, grey hair for seniors, a larger head and a shorter body for children, a hat, glasses, bags, sleeves,
coat, trousers/shorts/skirt, boots, and stripes/logo/plaid/two-colour tops. :func:`pa100k_vector` maps a person to
the 26 PA-100K attributes; ``Side`` is the only one the renderer cannot show and stays 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

RGB = Tuple[int, int, int]

# Saturated clothing colours, far from the light backgrounds and from each other (named in captions).
CLOTHES: Dict[str, RGB] = {
    "red": (205, 30, 35), "green": (25, 145, 45), "blue": (30, 60, 205), "yellow": (240, 205, 20),
    "orange": (245, 125, 15), "purple": (125, 40, 165), "pink": (240, 105, 175), "black": (25, 25, 28),
}
SKIN: Tuple[RGB, ...] = ((255, 219, 180), (232, 180, 140), (198, 134, 92), (160, 105, 65))
HAIR: Dict[str, RGB] = {"black": (30, 22, 18), "brown": (105, 60, 25), "blonde": (225, 185, 90)}
GREY_HAIR: RGB = (200, 200, 205)
SHOES: RGB = (45, 35, 30)
BOOTS: RGB = (95, 55, 25)

# RAF-DB basic label order (1-based in list_patition_label.txt).
EXPRESSIONS = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")

# PA-100K annotation.mat ``attributes`` in file order (index 0..25).
PA100K_ATTRIBUTES = (
    "Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses", "HandBag",
    "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve", "UpperStride", "UpperLogo",
    "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern", "LongCoat", "Trousers", "Shorts", "Skirt&Dress",
    "boots",
)

AGES = ("child", "adult", "senior")
TOP_PATTERNS = ("plain", "stride", "logo", "plaid", "splice")
LOWER_KINDS = ("trousers", "shorts", "skirt")
BAGS = (None, "handbag", "shoulder", "backpack")


@dataclass
class PersonSpec:
    female: bool
    age: str                    # child | adult | senior
    view: str                   # front | back
    skin: RGB
    hair: str                   # HAIR key, or "grey" for seniors
    top: str                    # CLOTHES key
    top2: str                   # second colour: splice half, pattern lines, logo
    sleeves: str                # short | long
    top_pattern: str            # TOP_PATTERNS
    lower_kind: str             # LOWER_KINDS
    lower: str                  # CLOTHES key
    lower_pattern: str          # plain | stripe | dots
    long_coat: bool
    boots: bool
    hat: Optional[str]          # CLOTHES key or None
    glasses: bool
    bag: Optional[str]          # BAGS
    hold_front: bool            # a box held in front with both hands (standing only)
    expression: str             # EXPRESSIONS
    action: str                 # pose.SCENE_ACTIONS

    @property
    def hair_rgb(self) -> RGB:
        return GREY_HAIR if self.hair == "grey" else HAIR[self.hair]

    @property
    def noun(self) -> str:
        return {("child", True): "girl", ("child", False): "boy", ("adult", True): "woman",
                ("adult", False): "man", ("senior", True): "old woman", ("senior", False): "old man"}[
            (self.age, self.female)]


def _pick(rng: np.random.Generator, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def sample_person(rng: np.random.Generator, action: str = "standing", expression: Optional[str] = None,
                  view: Optional[str] = None, age: Optional[str] = None) -> PersonSpec:
    """A random person; ``action``/``expression``/``view``/``age`` fix those fields (e.g. the class being drawn)."""
    female = bool(rng.random() < 0.5)
    age = age or _pick(rng, AGES, p=[0.2, 0.6, 0.2])
    view = view or ("front" if rng.random() < 0.75 else "back")
    colours = list(CLOTHES)
    top, lower, top2, hat_c = (colours[i] for i in rng.permutation(len(colours))[:4])
    lower_kind = _pick(rng, LOWER_KINDS, p=[0.45, 0.25, 0.30] if female else [0.65, 0.35, 0.0])
    long_coat = bool(age != "child" and lower_kind != "shorts" and rng.random() < 0.15)
    return PersonSpec(
        female=female, age=age, view=view, skin=SKIN[int(rng.integers(len(SKIN)))],
        hair="grey" if age == "senior" else _pick(rng, tuple(HAIR)),
        top=top, top2=top2, sleeves="long" if long_coat or rng.random() < 0.5 else "short",
        top_pattern="plain" if long_coat else _pick(rng, TOP_PATTERNS, p=[0.4, 0.15, 0.15, 0.15, 0.15]),
        lower_kind=lower_kind, lower=lower,
        lower_pattern="plain" if lower_kind == "shorts" else _pick(rng, ("plain", "stripe", "dots"),
                                                                   p=[0.7, 0.15, 0.15]),
        long_coat=long_coat, boots=bool(lower_kind != "trousers" and rng.random() < 0.25),
        hat=hat_c if rng.random() < 0.3 else None, glasses=bool(view == "front" and rng.random() < 0.3),
        bag=_pick(rng, BAGS, p=[0.5, 0.15, 0.15, 0.2]),
        hold_front=bool(action == "standing" and rng.random() < 0.15),
        expression=expression or _pick(rng, EXPRESSIONS), action=action,
    )


def pa100k_vector(p: PersonSpec) -> List[int]:
    """The person's 26 PA-100K labels (file order); ``Side`` is never drawn and stays 0."""
    on = {
        "Female": p.female, "AgeOver60": p.age == "senior", "Age18-60": p.age == "adult",
        "AgeLess18": p.age == "child", "Front": p.view == "front", "Side": False, "Back": p.view == "back",
        "Hat": p.hat is not None, "Glasses": p.glasses and p.view == "front", "HandBag": p.bag == "handbag",
        "ShoulderBag": p.bag == "shoulder", "Backpack": p.bag == "backpack", "HoldObjectsInFront": p.hold_front,
        "ShortSleeve": p.sleeves == "short", "LongSleeve": p.sleeves == "long",
        "UpperStride": p.top_pattern == "stride", "UpperLogo": p.top_pattern == "logo",
        "UpperPlaid": p.top_pattern == "plaid", "UpperSplice": p.top_pattern == "splice",
        "LowerStripe": p.lower_pattern == "stripe", "LowerPattern": p.lower_pattern == "dots",
        "LongCoat": p.long_coat, "Trousers": p.lower_kind == "trousers", "Shorts": p.lower_kind == "shorts",
        "Skirt&Dress": p.lower_kind == "skirt", "boots": p.boots,
    }
    return [int(bool(on[name])) for name in PA100K_ATTRIBUTES]
