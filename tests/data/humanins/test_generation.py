"""The two offline generation tools: caption -> question/answer pairs and instruction paraphrasing (rules and LLM)."""
import importlib.util
import json
import os

import pytest

from fixtures_attributes import write_text_pedes
from lman_ms.data.humanins import AnnotationError
from lman_ms.data.humanins.caption_qa import (QA_PROMPT, QUESTIONS, LLMCaptionQA, RuleBasedCaptionQA,
                                              caption_attributes, image_qa, parse_caption)
from lman_ms.data.humanins.paraphrase import (PARAPHRASE_PROMPT, LLMParaphraser, RuleBasedParaphraser, check_pool,
                                              enlarge_pool, load_pool, parse_sentences, save_pool, split_protected)
from lman_ms.data.humanins.templates import RESOLUTION, SEEDS, instructions_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
RES = RESOLUTION.strip()   # "The original resolution of this image has a width and a height of {width} and {height}."


def tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- caption -> QA -------------------------------------------------------------------------------------------------
def test_rules_answer_only_what_the_caption_states():
    caption = "A young man in a gray hoodie and black shorts, carrying a blue backpack. He is not wearing a hat."
    pairs = RuleBasedCaptionQA().generate(caption, key="k1")
    got = {p.aspect: p.answer for p in pairs}
    assert got == {
        "gender": "This person is male.",
        "age": "This person looks like a young adult.",
        "upper": "This person is wearing a gray hoodie on the upper body.",
        "lower": "This person is wearing black shorts on the lower body.",
        "bag": "Yes, this person is carrying a blue backpack.",
        "headwear": "No, this person is not wearing a hat.",
    }
    for p in pairs:
        assert p.question in QUESTIONS[p.aspect]
    # Wording is a stable function of (seed, key); another seed may choose another wording, never another answer.
    assert [p.question for p in RuleBasedCaptionQA().generate(caption, "k1")] == [p.question for p in pairs]
    assert [p.answer for p in RuleBasedCaptionQA(seed=5).generate(caption, "k1")] == [p.answer for p in pairs]


def test_parse_phrases_modifiers_and_negation():
    m = parse_caption("She wears a pair of white sneakers, a tank top and no glasses; her hair is long and curly.")
    assert [x.phrase for x in m["shoes"]] == ["a pair of white sneakers"]
    assert [x.phrase for x in m["upper"]] == ["a tank top"]          # "tank" modifies "top", not a second garment
    assert [(x.phrase, x.negated) for x in m["glasses"]] == [("glasses", True)]
    assert [x.phrase for x in m["hair"]] == ["long and curly hair"]          # predicative: "hair is long and curly"
    assert m["gender"][0].phrase == "female" and m["age"] == []


def test_caption_attributes_values_and_unknowns():
    values, names = caption_attributes(["A woman in a long-sleeved white blouse and a red skirt, with a black handbag.",
                                        "The man wears boots."])   # a later, contradicting caption does not override
    a = dict(zip(names, values))
    assert (a["female"], a["long_sleeve"], a["short_sleeve"], a["skirt_or_dress"], a["trousers"]) == (1, 1, 0, 1, 0)
    assert (a["white_upper_body_clothing"], a["red_lower_body_clothing"], a["black_lower_body_clothing"]) == (1, 1, 0)
    assert (a["bag"], a["backpack"], a["boots"]) == (1, 0, 1)
    assert (a["hat"], a["glasses"], a["long_hair"], a["elderly"]) == (-1, -1, -1, -1)


def test_llm_caption_qa_uses_the_paper_prompt_and_falls_back():
    caption = "A woman with long hair wearing a red coat."
    prompts = []

    def fake(prompt):
        prompts.append(prompt)
        return "  She   looks to be a woman. " if "gender" in prompt or "man or a woman" in prompt or \
            "male or female" in prompt else "Cannot be determined from the description."

    pairs = LLMCaptionQA(fake).generate(caption, key="img7")
    rules = RuleBasedCaptionQA().generate(caption, key="img7")
    assert [p.question for p in pairs] == [p.question for p in rules]   # same questions as the stated aspects
    assert prompts == [QA_PROMPT.format(caption="A woman with long hair wearing a red coat", question=p.question)
                       for p in rules]
    assert prompts[0] == ("This is an overall appearance of a pedestrian: A woman with long hair wearing a red coat. "
                          f"Please answer the following question according to it strictly: {rules[0].question}")
    assert pairs[0].answer == "She looks to be a woman."                 # whitespace normalised
    assert [p.answer for p in pairs[1:]] == [p.answer for p in rules[1:]]  # "cannot be determined" -> rules


def test_image_qa_first_caption_wins_per_aspect():
    pairs = image_qa(["A man in a red shirt.", "A woman in a blue shirt and jeans."], key="x", generator=RuleBasedCaptionQA())
    assert [p["answer"] for p in pairs[:2]] == ["A man in a red shirt.", "A woman in a blue shirt and jeans."]
    assert [p["answer"] for p in pairs[2:]] == ["This person is male.", "This person is wearing a red shirt on the upper body.",
                                               "This person is wearing jeans on the lower body."]


# ---- paraphrase ----------------------------------------------------------------------------------------------------
def test_rule_paraphrases_keep_meaning_and_the_resolution_sentence():
    seed = SEEDS["face_detection"][0] + RESOLUTION
    out = RuleBasedParaphraser().paraphrase(seed, 5)
    assert len(out) == len(set(out)) == 5 and seed not in out
    assert all(p.endswith(" " + RES) for p in out)
    assert out[0] == ("This is a face detection task. You should identify the faces in the picture and draw a "
                      "bounding box around each one. " + RES)
    assert ("The task here is face detection. You should identify the faces in the image and draw a bounding box "
            "around each one. " + RES) in out
    assert RuleBasedParaphraser().paraphrase(seed, 5) == out              # deterministic
    assert RuleBasedParaphraser().paraphrase("Find every face.", 3) == [
        "Locate each face.", "Please find every face.", "Please locate each face."]
    assert RuleBasedParaphraser().paraphrase("What is the person doing?", 2) == ["Tell me, what is the person doing?"]
    assert split_protected("Detect faces. " + RES) == ("Detect faces.", RES)


def test_llm_paraphraser_prompt_and_reply_parsing():
    seen = []
    reply = ("Here are 5 sentences with the same meaning:\n1. Find all the faces and box them.\n"
             "2) Detect faces and draw boxes.\n- find all the faces and box them.\n"
             "3. Use {braces} here.\n4. \"Mark every face with a box.\"\n")

    def fake(prompt):
        seen.append(prompt)
        return reply

    out = LLMParaphraser(fake).paraphrase("Detect the faces. " + RES, n=5)
    assert seen == [PARAPHRASE_PROMPT.format(n=5, text="Detect the faces.")]
    assert seen[0] == "Please generate 5 sentences that have the same meaning as the following: Detect the faces."
    assert out == ["Find all the faces and box them. " + RES, "Detect faces and draw boxes. " + RES,
                   "Mark every face with a box. " + RES]
    assert parse_sentences("1. a\n\n2. b") == ["a", "b"]


def test_enlarged_pool_round_trips_into_instructions_for(tmp_path):
    seeds = {"face_detection": ["Find every face.", "Detect all faces in the image."],
             "action_recognition": ["What is the person doing?"]}
    pool = enlarge_pool(RuleBasedParaphraser(), seeds, per_template=2)
    assert pool["face_detection"][:2] == seeds["face_detection"]
    assert pool["face_detection"][2:] == ["Locate each face.", "Please find every face.",
                                          "Detect all faces in the picture.", "Find all faces in the image."]
    assert pool["action_recognition"] == ["What is the person doing?", "Tell me, what is the person doing?"]
    two = enlarge_pool(RuleBasedParaphraser(), seeds, per_template=2, rounds=2)
    assert two["face_detection"][:6] == pool["face_detection"] and len(two["face_detection"]) > 6
    path = str(tmp_path / "pool.json")
    save_pool(path, pool)
    assert load_pool(path) == pool
    ins = instructions_for("face_detection", "img1", 640, 480, count=3, pool=load_pool(path))
    assert len(set(ins)) == 3 and all(i.endswith("a width and a height of 640 and 480.") for i in ins)
    assert all(i[: -len(RESOLUTION.format(width=640, height=480))] in pool["face_detection"] for i in ins)


def test_pool_errors_name_file_and_key(tmp_path):
    path = str(tmp_path / "p.json")
    with open(path, "w") as f:
        json.dump({"face_detection": ["ok.", "Boxes for {width}."]}, f)
    with pytest.raises(AnnotationError) as e:
        load_pool(path)
    assert e.value.path == path and e.value.key == "face_detection[1]"
    with pytest.raises(AnnotationError) as e:
        check_pool({"dancing": ["x"]}, "pool.json")
    assert e.value.key == "dancing" and "unknown task" in str(e.value)
    with open(path, "w") as f:
        f.write('{\n "caption": [\n "x",\n ]\n}')
    with pytest.raises(AnnotationError) as e:
        load_pool(path)
    assert e.value.line == 4


# ---- the two thin CLIs ---------------------------------------------------------------------------------------------
def test_paraphrase_cli_with_a_fake_llm_module(tmp_path, monkeypatch, capsys):
    (tmp_path / "fake_llm_h3.py").write_text(
        "def generate(prompt):\n"
        "    text = prompt.split('following: ', 1)[1]\n"
        "    return '1. ' + text.replace('.', '!') + '\\n2. In short: ' + text\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = str(tmp_path / "pool.json")
    assert tool("paraphrase_instructions").main(["--out", out, "--tasks", "expression_recognition",
                                                  "--generator", "fake_llm_h3:generate"]) == 0
    pool = load_pool(out)
    seeds = SEEDS["expression_recognition"]
    assert list(pool) == ["expression_recognition"] and pool["expression_recognition"][:len(seeds)] == seeds
    assert pool["expression_recognition"][len(seeds)] == "In short: " + seeds[0]   # "?"-seeds have no "." to swap
    assert "expression_recognition: " in capsys.readouterr().out
    assert tool("paraphrase_instructions").main(["--out", out]) == 0          # rule-based, every task
    assert set(load_pool(out)) == set(SEEDS)


def test_caption_to_qa_cli(tmp_path, capsys):
    recs = [{"split": "train", "captions": ["A man in a red shirt."], "file_path": "a/1.jpg", "id": 1}]
    write_text_pedes(tmp_path / "ICFG-PEDES", "ICFG-PEDES.json", recs)
    out = str(tmp_path / "qa.json")
    assert tool("caption_to_qa").main(["--dataset", "icfg_pedes", "--root", str(tmp_path / "ICFG-PEDES"),
                                       "--split", "train", "--out", out]) == 0
    with open(out) as f:
        data = json.load(f)
    assert [p["answer"] for p in data["items"]["a/1"]] == ["This person is male.",
                                                          "This person is wearing a red shirt on the upper body."]
    assert "wrote 2 question/answer pairs" in capsys.readouterr().out
