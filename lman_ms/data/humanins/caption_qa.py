"""Caption -> question/answer pairs for the text-described pedestrian datasets (CUHK-PEDES, ICFG-PEDES, UFine6926).

The paper enriches these captions by asking an LLM: "This is an overall appearance of a pedestrian: <caption>.
Please answer the following question according to it strictly: <question>." (HumanIns, Instruction-Answer
Generation). Two generators implement :class:`CaptionQAGenerator`:

* :class:`RuleBasedCaptionQA` (the deterministic fallback, works today): a small phrase parser finds what the
  caption states about gender, age, hair, upper and lower clothing, shoes, bags, headwear, glasses and held
  objects, and answers only about what is stated, in the caption's own words ("strictly");
* :class:`LLMCaptionQA`: any ``generate(prompt: str) -> str`` callable (the project's own decoder, later) asked
  the paper's prompt for the same questions.

:func:`caption_attributes` derives an attribute vector from the same parse so that generated answers can be scored:
1 = stated, 0 = stated as absent or the opposite option, -1 = the caption says nothing about it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from .templates import stable_index

QA_PROMPT = ("This is an overall appearance of a pedestrian: {caption}. "
             "Please answer the following question according to it strictly: {question}")

DESCRIBE_TEMPLATES = [
    "Please describe this person.",
    "Describe the appearance of the pedestrian in the picture.",
    "What does this person look like?",
    "Give a detailed description of this pedestrian's appearance.",
    "Please describe the clothing and belongings of this person in detail.",
    "Write a description of the person in this image, from head to toe.",
    "How would you describe this pedestrian to someone searching for them?",
    "Describe what this person is wearing and carrying.",
    "Provide a fine-grained description of the person shown here.",
    "Tell me about the appearance of this person.",
    "Please analyze this pedestrian image comprehensively and describe the person.",
]

QUESTIONS: Dict[str, List[str]] = {
    "gender": ["What is the gender of this person?", "Is this person male or female?",
               "Is the pedestrian a man or a woman?"],
    "age": ["How old does this person look like?", "What is the approximate age of this person?",
            "Which age group does this person belong to?"],
    "hair": ["What does this person's hair look like?", "Describe the hair of this person.",
             "What kind of hairstyle does this person have?"],
    "upper": ["What is this person wearing on the upper body?", "Describe the upper-body clothing of this person.",
              "What kind of top is this person wearing?"],
    "lower": ["What is this person wearing on the lower body?", "Describe the lower-body clothing of this person.",
              "What does this person wear on the legs?"],
    "shoes": ["What shoes is this person wearing?", "Describe the footwear of this person.",
              "What is this person wearing on the feet?"],
    "bag": ["Is this person carrying a bag?", "Does this person have a bag with them?",
            "Is the pedestrian carrying any bag?"],
    "headwear": ["Is this person wearing a hat?", "Does this person wear anything on the head?",
                 "Is there a hat or cap on this person's head?"],
    "glasses": ["Is this person wearing glasses?", "Does this person wear glasses?",
                "Are there glasses on this person's face?"],
    "holding": ["What is this person holding?", "Is this person holding anything in the hands?",
                "What does this person have in the hands?"],
}
ASPECTS = tuple(QUESTIONS)

# ---- vocabulary ----------------------------------------------------------------------------------------------------
COLOURS = ("black", "white", "red", "blue", "green", "yellow", "gray", "brown", "pink", "purple", "orange")
_COLOUR_WORDS = {**{c: c for c in COLOURS}, "grey": "gray", "navy": "blue", "beige": "brown", "tan": "brown",
                 "khaki": "brown", "maroon": "red", "violet": "purple", "silver": "gray", "dark": None, "light": None}
FEMALE = {"woman", "women", "girl", "lady", "female", "she", "her", "hers", "mother", "grandmother", "schoolgirl"}
MALE = {"man", "men", "boy", "guy", "gentleman", "male", "he", "him", "his", "father", "grandfather", "schoolboy"}
_PRONOUNS = {"she", "her", "hers", "he", "him", "his"}
AGE_GROUPS = ("child", "teenager", "young_adult", "middle_aged", "elderly")
_AGE_PHRASE = {"child": "a child", "teenager": "a teenager", "young_adult": "a young adult",
               "middle_aged": "a middle-aged adult", "elderly": "an elderly person"}
_AGE_WORDS = {"child": "child", "children": "child", "kid": "child", "toddler": "child", "baby": "child",
              "teenage": "teenager", "teenager": "teenager", "teen": "teenager", "adolescent": "teenager",
              "schoolgirl": "teenager", "schoolboy": "teenager", "middle-aged": "middle_aged",
              "elderly": "elderly", "senior": "elderly", "grandmother": "elderly", "grandfather": "elderly"}
_PERSON_NOUNS = {"man", "woman", "lady", "guy", "person", "adult", "gentleman", "boy", "girl", "male", "female"}

GARMENTS = {
    "upper": {"shirt", "t-shirt", "tshirt", "tee", "blouse", "jacket", "coat", "sweater", "hoodie", "top", "vest",
              "sweatshirt", "cardigan", "jersey", "blazer", "parka", "windbreaker", "pullover", "jumper", "tank"},
    "lower": {"pants", "trousers", "jeans", "shorts", "skirt", "dress", "leggings", "slacks", "capris", "tights",
              "sweatpants", "joggers", "gown", "miniskirt"},
    "shoes": {"shoes", "shoe", "sneakers", "boots", "sandals", "heels", "slippers", "flip-flops", "loafers",
              "flats", "trainers", "footwear"},
    "bag": {"backpack", "bag", "handbag", "purse", "satchel", "suitcase", "tote", "briefcase", "luggage",
            "knapsack", "schoolbag", "rucksack", "clutch"},
    "headwear": {"hat", "cap", "beanie", "helmet", "beret"},
    "glasses": {"glasses", "sunglasses", "spectacles", "eyeglasses", "goggles"},
    "hair": {"hair", "ponytail", "ponytails", "bun", "braid", "braids", "pigtails"},
}
_NOUN_ASPECT = {w: a for a, words in GARMENTS.items() for w in words}
_NOUN_ASPECT.update({w + "s": a for w, a in list(_NOUN_ASPECT.items()) if not w.endswith("s")})  # "two bags"
PLURAL = {"pants", "trousers", "jeans", "shorts", "leggings", "slacks", "capris", "tights", "sweatpants", "joggers",
          "shoes", "sneakers", "boots", "sandals", "heels", "slippers", "flip-flops", "loafers", "flats", "trainers",
          "glasses", "sunglasses", "spectacles", "eyeglasses", "goggles", "hair", "braids", "ponytails", "pigtails",
          "footwear", "luggage"}
# Words that describe a garment ("a long-sleeved black and white striped shirt"). They stay in a noun phrase even
# when they are nouns themselves ("tank top", "dress shoes", "top hat"), and they are the only words taken from
# after the noun ("her hair is long and curly").
MODIFIERS = set(_COLOUR_WORDS) | {
    "bright", "pale", "deep", "colorful", "colourful", "plain", "solid", "striped", "plaid", "checked",
    "checkered", "floral", "printed", "patterned", "polka", "dotted", "graphic", "camouflage", "long", "short",
    "knee-length", "ankle-length", "shoulder-length", "mid-length", "waist-length", "cropped", "denim", "leather",
    "cotton", "wool", "woolen", "knit", "knitted", "fur", "jean", "canvas", "suede", "sleeveless", "long-sleeved",
    "short-sleeved", "long-sleeve", "short-sleeve", "tight", "loose", "fitted", "baggy", "skinny", "slim",
    "wide-leg", "hooded", "zippered", "buttoned", "casual", "formal", "sports", "athletic", "tennis", "running",
    "high", "flat", "shoulder", "tank", "polo", "suit", "rain", "winter", "puffer", "big", "small", "large", "little",
    "thick", "thin", "curly", "straight", "wavy", "blond", "blonde", "brunette", "messy", "neat", "tied", "bald",
    "collared", "button-up", "button-down", "zip-up", "v-neck", "crew-neck", "ankle", "knee", "mini", "maxi",
    "school", "cross-body", "crossbody", "hand", "baseball", "cowboy", "sun", "dress", "low", "top", "up"}
_DETERMINERS = {"a", "an", "the", "his", "her", "their", "its", "one", "some", "this", "that"}
_NEGATORS = {"no", "without", "not", "never", "nothing", "neither", "nor", "n't"}
# Words that end a noun phrase when walking back from its noun; any other word (a brand: "black ugg boots") is kept.
_STOP = _DETERMINERS | _NEGATORS | {
    "and", "or", "but", "plus", "while", "also", "in", "on", "with", "of", "at", "over", "under", "around", "across",
    "from", "to", "for", "by", "along", "into", "is", "are", "was", "has", "have", "had", "wears", "wear", "wore",
    "carries", "carry", "holds", "hold", "dressed", "sports", "appears", "looks", "seems", "who", "which", "it",
    "they", "there", "as", "be", "very", "pair", "pairs"}
_TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*|[.,;:!?]")


def tokenize(text: str) -> List[str]:
    """Lower-case words (hyphenated words whole) and punctuation; a possessive "'s" is dropped ("man's" -> "man")."""
    tokens = _TOKEN.findall(text.lower().replace("\u2019", "'"))
    return [t[:-2] if t.endswith("'s") else t for t in tokens]


@dataclass(frozen=True)
class Mention:
    """One thing the caption says: ``aspect`` (a key of QUESTIONS), the normalised ``phrase``, the head ``noun``."""
    aspect: str
    phrase: str
    noun: str = ""
    negated: bool = False


def _is_modifier(tok: str, prev: str, nxt: str) -> bool:
    if tok in ("and", ","):  # only "red, white and black", never "a shirt and pants"
        return prev in _COLOUR_WORDS and nxt in _COLOUR_WORDS
    if tok in MODIFIERS:
        return True
    return not (tok in _STOP or tok in ".,;:!?" or tok in _NOUN_ASPECT or tok in FEMALE or tok in MALE
                or tok in _PERSON_NOUNS or tok.endswith(("ing", "ly")) or tok.isdigit())


def _noun_phrase(tokens: List[str], i: int) -> Tuple[str, int]:
    """The noun phrase ending at ``tokens[i]`` with a normalised article, and the index where it starts."""
    j = i
    while j > 0 and i - j < 6 and _is_modifier(tokens[j - 1], tokens[j - 2] if j >= 2 else "", tokens[j]):
        j -= 1
    words = _predicate(tokens, i) + tokens[j:i + 1]   # "her hair is long and curly" -> "long and curly hair"
    noun = tokens[i]
    if j >= 2 and tokens[j - 1] == "of" and tokens[j - 2] in ("pair", "pairs"):
        return _words(["a pair of"] + words), max(0, j - 3)
    if noun in PLURAL or noun.endswith("s") and noun[:-1] in _NOUN_ASPECT:
        return _words(words), j
    article = "an" if words[0][0] in "aeiou" else "a"
    return _words([article] + words), j


def _predicate(tokens: List[str], i: int) -> List[str]:
    """Modifiers said after the noun with a copula: ``hair is long and curly`` -> [long, and, curly]."""
    k = i + 2
    if k >= len(tokens) or tokens[i + 1] not in ("is", "are", "was", "were") or tokens[k] not in MODIFIERS:
        return []
    out: List[str] = []
    while k < len(tokens) and len(out) < 5 and (tokens[k] in MODIFIERS or (
            tokens[k] == "and" and k + 1 < len(tokens) and tokens[k + 1] in MODIFIERS)):
        out.append(tokens[k])
        k += 1
    return out


def _words(words: List[str]) -> str:
    return " ".join(words).replace(" ,", ",")


def _negated(tokens: List[str], start: int) -> bool:
    """A negator shortly before the phrase, within the same clause ("no hat", "is not carrying a bag")."""
    for k in range(start - 1, max(-1, start - 5), -1):
        if tokens[k] in ".,;:!?" or tokens[k] in _NOUN_ASPECT:
            return False
        if tokens[k] in _NEGATORS or tokens[k].endswith("n't"):
            return True
    return False


def parse_caption(caption: str) -> Dict[str, List[Mention]]:
    """What one caption states, per aspect, in order of appearance (first mention of each noun only)."""
    tokens = tokenize(caption)
    out: Dict[str, List[Mention]] = {a: [] for a in ASPECTS}
    seen = set()
    gender = [t for t in tokens if t in FEMALE or t in MALE]
    nouns = [t for t in gender if t not in _PRONOUNS]
    cue = nouns[0] if nouns else (gender[0] if gender else None)
    if cue is not None:
        out["gender"].append(Mention("gender", "female" if cue in FEMALE else "male", cue))
    for i, tok in enumerate(tokens):
        group = _AGE_WORDS.get(tok)
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in ("young", "old", "older", "elderly", "little") and nxt in _PERSON_NOUNS | {"child", "kid"}:
            group = {"young": "young_adult", "little": "child"}.get(tok, "elderly")
            if tok == "young" and nxt in ("boy", "girl"):
                group = "teenager"
        if group is not None and not out["age"]:
            out["age"].append(Mention("age", group, tok))
        if tok == "bald" and not out["hair"]:
            out["hair"].append(Mention("hair", "a bald head", "bald"))
        if tok == "holding" and not out["holding"]:
            phrase = []
            for t in tokens[i + 1:i + 8]:
                if t in ".,;:!?" or t in ("and", "while", "with", "in", "on", "which", "that"):
                    break
                phrase.append(t)
            if phrase:
                out["holding"].append(Mention("holding", " ".join(phrase), phrase[-1]))
        aspect = _NOUN_ASPECT.get(tok)
        if aspect is None or tok in seen:
            continue
        nxt_aspect = _NOUN_ASPECT.get(nxt)
        if nxt_aspect is not None and tok in MODIFIERS:  # "tank top", "dress shoes", "top hat": the next noun heads it
            continue
        seen.add(tok)
        phrase, start = _noun_phrase(tokens, i)
        out[aspect].append(Mention(aspect, phrase, tok, _negated(tokens, start)))
    return out


# ---- answers -------------------------------------------------------------------------------------------------------
def _join(phrases: Sequence[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def answer_for(aspect: str, mentions: List[Mention]) -> Optional[str]:
    """The answer to ``aspect``'s questions from the caption's mentions, or None when the caption is silent."""
    positive = [m.phrase for m in mentions if not m.negated]
    negative = [m for m in mentions if m.negated]
    if aspect == "gender" and mentions:
        return f"This person is {mentions[0].phrase}."
    if aspect == "age" and mentions:
        return f"This person looks like {_AGE_PHRASE[mentions[0].phrase]}."
    if aspect in ("bag", "headwear", "glasses"):
        verb = "carrying" if aspect == "bag" else "wearing"
        if positive:
            return f"Yes, this person is {verb} {_join(positive)}."
        if negative:
            noun = {"bag": "a bag", "headwear": "a hat", "glasses": "glasses"}[aspect]
            return f"No, this person is not {verb} {noun}."
        return None
    if not positive:
        return None
    if aspect == "hair":
        described = [p for p in positive if p != "hair"]   # a bare "her hair is in a ponytail" says nothing itself
        return f"This person has {_join(described)}." if described else None
    if aspect == "holding":
        return f"This person is holding {positive[0]}."
    where = {"upper": " on the upper body", "lower": " on the lower body", "shoes": ""}[aspect]
    return f"This person is wearing {_join(positive)}{where}."


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    aspect: str

    def as_dict(self) -> Dict[str, str]:
        return {"question": self.question, "answer": self.answer}


class CaptionQAGenerator(Protocol):
    def generate(self, caption: str, key: str = "") -> List[QAPair]:
        """Question/answer pairs about one caption; ``key`` makes the choice of question wording stable."""
        ...


def choose_question(aspect: str, key: str, seed: int) -> str:
    options = QUESTIONS[aspect]
    return options[stable_index(seed, "caption_qa", key, aspect, modulo=len(options))]


class RuleBasedCaptionQA:
    """Deterministic: one pair per aspect that the caption states, question wording chosen by ``key``."""

    def __init__(self, seed: int = 0, aspects: Sequence[str] = ASPECTS):
        unknown = set(aspects) - set(ASPECTS)
        if unknown:
            raise ValueError(f"unknown aspects {sorted(unknown)}; known: {ASPECTS}")
        self.seed, self.aspects = seed, tuple(aspects)

    def generate(self, caption: str, key: str = "") -> List[QAPair]:
        mentions = parse_caption(caption)
        pairs = []
        for aspect in self.aspects:
            answer = answer_for(aspect, mentions[aspect])
            if answer is not None:
                pairs.append(QAPair(choose_question(aspect, key, self.seed), answer, aspect))
        return pairs


_UNANSWERED = re.compile(r"\b(not (mentioned|stated|specified|described|provided)|cannot be (determined|inferred)|"
                         r"does not (say|mention|specify)|no information|unknown)\b", re.I)


class LLMCaptionQA:
    """The paper's prompt through ``generate(prompt) -> str``. Questions are asked only for the aspects the rule
    parser finds stated (a question about something the caption never mentions has no strict answer); a reply that
    is empty or says the caption does not tell falls back to the rule-based answer."""

    def __init__(self, generate: Callable[[str], str], seed: int = 0, aspects: Sequence[str] = ASPECTS):
        self.llm = generate
        self.rules = RuleBasedCaptionQA(seed, aspects)

    def generate(self, caption: str, key: str = "") -> List[QAPair]:
        pairs = []
        for rule in self.rules.generate(caption, key):
            prompt = QA_PROMPT.format(caption=caption.strip().rstrip("."), question=rule.question)
            reply = " ".join(str(self.llm(prompt)).split())
            answer = rule.answer if not reply or _UNANSWERED.search(reply) else reply
            pairs.append(QAPair(rule.question, answer, rule.aspect))
        return pairs


# ---- per image -----------------------------------------------------------------------------------------------------
def describe_instruction(key: str, index: int, seed: int = 0) -> str:
    return DESCRIBE_TEMPLATES[stable_index(seed, "describe", key, index, modulo=len(DESCRIBE_TEMPLATES))]


def image_qa(captions: Sequence[str], key: str, generator: CaptionQAGenerator, seed: int = 0) -> List[Dict[str, str]]:
    """All pairs of one image: "describe this person" -> each caption, then one pair per aspect, taken from the
    first caption that states it (two captions of one image may disagree; one answer per question)."""
    pairs = [{"question": describe_instruction(key, i, seed), "answer": c.strip()} for i, c in enumerate(captions)]
    answered = set()
    for c in captions:
        for qa in generator.generate(c, key):
            if qa.aspect not in answered:
                answered.add(qa.aspect)
                pairs.append(qa.as_dict())
    return pairs


def attribute_names() -> List[str]:
    names = ["female", *AGE_GROUPS, "long_hair", "hat", "glasses", "bag", "backpack", "long_sleeve", "short_sleeve",
             "trousers", "shorts", "skirt_or_dress", "boots"]
    names += [f"{c}_upper_body_clothing" for c in COLOURS] + [f"{c}_lower_body_clothing" for c in COLOURS]
    return names


def _colours(phrases: Sequence[str]) -> Dict[str, int]:
    found = {_COLOUR_WORDS[w] for p in phrases for w in p.split() if _COLOUR_WORDS.get(w)}
    return {c: int(c in found) for c in COLOURS}


def caption_attributes(captions: Sequence[str]) -> Tuple[List[int], List[str]]:
    """An attribute vector (1 / 0 / -1 unknown) from the captions, with :func:`attribute_names`; for each attribute
    the first caption that tells wins."""
    values: Dict[str, int] = {}

    def put(name: str, value: int) -> None:
        values.setdefault(name, value)

    for caption in captions:
        m = parse_caption(caption)
        if m["gender"]:
            put("female", int(m["gender"][0].phrase == "female"))
        if m["age"]:
            for g in AGE_GROUPS:
                put(g, int(m["age"][0].phrase == g))
        hair = " ".join(x.phrase for x in m["hair"] if not x.negated).split()
        longish = {"long", "shoulder-length", "shoulder", "waist-length"}  # stated length only, not "ponytail"
        if longish & set(hair) or {"bald", "short"} & set(hair):
            put("long_hair", int(bool(longish & set(hair))))
        for aspect, name in (("headwear", "hat"), ("glasses", "glasses"), ("bag", "bag")):
            if m[aspect]:
                put(name, int(any(not x.negated for x in m[aspect])))
        if m["bag"]:
            put("backpack", int(any(x.noun in ("backpack", "knapsack", "rucksack", "schoolbag") and not x.negated
                                    for x in m["bag"])))
        upper = [x for x in m["upper"] if not x.negated]
        if upper:
            words = " ".join(x.phrase for x in upper).split()
            if {"long-sleeved", "long-sleeve", "sweater", "hoodie", "sweatshirt"} & set(words):
                put("long_sleeve", 1)
                put("short_sleeve", 0)
            elif {"short-sleeved", "short-sleeve", "t-shirt", "tshirt", "tee", "sleeveless", "tank"} & set(words):
                put("short_sleeve", 1)
                put("long_sleeve", 0)
            for c, v in _colours([x.phrase for x in upper]).items():
                put(f"{c}_upper_body_clothing", v)
        lower = [x for x in m["lower"] if not x.negated]
        if lower:
            nouns = {x.noun for x in lower}
            put("trousers", int(bool(nouns & {"pants", "trousers", "jeans", "leggings", "slacks", "capris",
                                               "tights", "sweatpants", "joggers"})))
            put("shorts", int("shorts" in nouns))
            put("skirt_or_dress", int(bool(nouns & {"skirt", "dress", "gown", "miniskirt"})))
            for c, v in _colours([x.phrase for x in lower]).items():
                put(f"{c}_lower_body_clothing", v)
        shoes = [x for x in m["shoes"] if not x.negated]
        if shoes:
            put("boots", int(any(x.noun == "boots" for x in shoes)))
    names = attribute_names()
    return [values.get(n, -1) for n in names], names
