"""CUHK-PEDES, ICFG-PEDES and UFine6926 converters: JSON lists of captioned crops in the real layouts."""
import json

import pytest

from fixtures_attributes import build_records, by_image, write_text_pedes
from lman_ms.data.humanins import AnnotationError
from lman_ms.data.humanins.caption_qa import DESCRIBE_TEMPLATES, QA_PROMPT, LLMCaptionQA, attribute_names
from lman_ms.data.humanins.text_pedes import write_qa_file

# The paper's Figure 3 caption, and a second caption of the same image that adds one new fact (the umbrella).
CAP_A = ("A teenage girl with shoulder-length black hair tied a ponytail. She is wearing a black hooded jacket. "
         "And wearing black fitted pants along with black Ugg boots. She has also strapped a red, white and black "
         "tricolored backpack on the shoulders.")
CAP_B = "The girl wears a black jacket, black trousers and a pair of black boots. She is holding an umbrella."
CAP_C = "A man in a white short-sleeved t-shirt and blue jeans.  He has no bag and wears glasses."
CAP_D = "An old woman wearing a long red coat and a gray hat."
CAP_C1 = " ".join(CAP_C.split())   # as written to the records: whitespace normalised

CUHK = [
    {"split": "train", "captions": [CAP_A, CAP_B], "file_path": "train_query/p11600_s14885.jpg",
     "processed_tokens": [CAP_A.lower().split(), CAP_B.lower().split()], "id": 11003},
    {"split": "train", "captions": [CAP_C], "file_path": "CUHK01/0363004.png",
     "processed_tokens": [CAP_C.lower().split()], "id": 7},
    {"split": "val", "captions": [CAP_D, CAP_C], "file_path": "Market/0001_c1s1_001051_00.jpg",
     "processed_tokens": [[], []], "id": 11004},
    {"split": "test", "captions": [CAP_D, CAP_A, CAP_C], "file_path": "test_query/p5981_s7779.jpg",
     "processed_tokens": [[], [], []], "id": 12001},
]
P1, P2 = "imgs/train_query/p11600_s14885.jpg", "imgs/CUHK01/0363004.png"


def qa_of(records):
    return {r["instruction"]: r["answer"] for r in records}


def attrs(record):
    return dict(zip(record["target"]["attribute_names"], record["target"]["attributes"]))


def test_cuhk_pedes_describe_and_caption_qa(tmp_path):
    write_text_pedes(tmp_path / "CUHK-PEDES", "reid_raw.json", CUHK, sizes={"CUHK01/0363004.png": (48, 128)})
    summary, records = build_records("cuhk_pedes", tmp_path / "CUHK-PEDES", "train", tmp_path / "out")
    imgs = by_image(records)
    assert sorted(imgs) == [P2, P1] and summary.images == 2
    r1 = imgs[P1]
    # 2 "describe" pairs (one per caption) + 7 facts of caption A + the umbrella of caption B (its other facts
    # were already answered by A).
    assert len(r1) == 10 and summary.records == 10 + 1 + 5
    assert r1[0]["id"] == "cuhk_pedes/train/train_query/p11600_s14885/0"
    assert (r1[0]["task"], r1[0]["split"], r1[0]["width"], r1[0]["height"]) == ("pedestrian_attribute", "train", 60, 140)
    assert r1[0]["instruction"] in DESCRIBE_TEMPLATES and r1[0]["answer"] == CAP_A
    assert r1[1]["instruction"] in DESCRIBE_TEMPLATES and r1[1]["answer"] == CAP_B
    answers = [r["answer"] for r in r1[2:]]
    assert answers == [
        "This person is female.",
        "This person looks like a teenager.",
        "This person has shoulder-length black hair and a ponytail.",
        "This person is wearing a black hooded jacket on the upper body.",
        "This person is wearing black fitted pants on the lower body.",
        "This person is wearing black ugg boots.",
        "Yes, this person is carrying a red, white and black tricolored backpack.",
        "This person is holding an umbrella.",
    ]
    t = r1[0]["target"]
    assert t["captions"] == [CAP_A, CAP_B] and t["person_id"] == 11003
    assert t["attribute_names"] == attribute_names()
    a = attrs(r1[0])
    assert (a["female"], a["teenager"], a["child"], a["long_hair"], a["backpack"], a["bag"], a["boots"]) == \
           (1, 1, 0, 1, 1, 1, 1)
    assert (a["trousers"], a["skirt_or_dress"], a["black_upper_body_clothing"], a["red_upper_body_clothing"]) == \
           (1, 0, 1, 0)
    assert (a["hat"], a["glasses"], a["long_sleeve"]) == (-1, -1, -1)     # not stated

    r2 = imgs[P2]
    assert (r2[0]["width"], r2[0]["height"]) == (48, 128)             # PNG header
    # Whitespace in captions is normalised; the negated bag is answered "no" and scored 0.
    assert r2[0]["answer"] == CAP_C1 == "A man in a white short-sleeved t-shirt and blue jeans. He has no bag and wears glasses."
    assert [r["answer"] for r in r2[1:]] == [
        "This person is male.",
        "This person is wearing a white short-sleeved t-shirt on the upper body.",
        "This person is wearing blue jeans on the lower body.",
        "No, this person is not carrying a bag.",
        "Yes, this person is wearing glasses.",
    ]
    a = attrs(r2[0])
    assert (a["female"], a["bag"], a["backpack"], a["glasses"], a["short_sleeve"], a["long_sleeve"]) == (0, 0, 0, 1, 1, 0)
    assert (a["white_upper_body_clothing"], a["blue_lower_body_clothing"], a["trousers"], a["young_adult"]) == \
           (1, 1, 1, -1)

    _, val = build_records("cuhk_pedes", tmp_path / "CUHK-PEDES", "val", tmp_path / "out")
    assert list(by_image(val)) == ["imgs/Market/0001_c1s1_001051_00.jpg"] and val[0]["split"] == "val"
    assert "This person looks like an elderly person." in qa_of(val).values()
    _, test = build_records("cuhk_pedes", tmp_path / "CUHK-PEDES", "test", tmp_path / "out")
    assert [r["answer"] for r in test[:3]] == [CAP_D, CAP_A, CAP_C1]    # three captions, three describe pairs


def test_cuhk_pedes_without_qa_and_older_file_name(tmp_path):
    write_text_pedes(tmp_path / "CUHK-PEDES", "caption_all.json", CUHK)
    summary, records = build_records("cuhk_pedes", tmp_path / "CUHK-PEDES", "train", tmp_path / "out", qa=False)
    assert summary.records == 3 and [r["answer"] for r in records] == [CAP_A, CAP_B, CAP_C1]


def test_icfg_pedes_splits(tmp_path):
    recs = [{"split": "train", "captions": [CAP_D], "file_path": "train/0001/0001_002_01_0303morning_0015_0.jpg",
             "processed_tokens": [[]], "id": 0},
            {"split": "test", "captions": [CAP_C], "file_path": "test/0027/0027_010_05_0303morning_0030_0.jpg",
             "processed_tokens": [[]], "id": 3102}]
    write_text_pedes(tmp_path / "ICFG-PEDES", "ICFG-PEDES.json", recs)
    _, train = build_records("icfg_pedes", tmp_path / "ICFG-PEDES", "train", tmp_path / "out")
    assert list(by_image(train)) == ["imgs/train/0001/0001_002_01_0303morning_0015_0.jpg"]
    assert attrs(train[0])["red_upper_body_clothing"] == 1 and attrs(train[0])["elderly"] == 1
    _, test = build_records("icfg_pedes", tmp_path / "ICFG-PEDES", "test", tmp_path / "out")
    assert list(by_image(test)) == ["imgs/test/0027/0027_010_05_0303morning_0030_0.jpg"]
    assert test[0]["target"]["person_id"] == 3102
    with pytest.raises(ValueError, match="unknown split 'val'"):
        build_records("icfg_pedes", tmp_path / "ICFG-PEDES", "val", tmp_path / "out")


def test_ufine6926_layout_and_annotation_file_option(tmp_path):
    recs = [{"split": "train", "id": "1", "file_path": "images/1.jpg", "captions": [CAP_D, CAP_C]},
            {"split": "test", "id": 2, "file_path": "images/2.jpg", "captions": [CAP_A]}]
    write_text_pedes(tmp_path / "UFine6926", "UFine6926.json", recs, image_dir="")
    _, train = build_records("ufine6926", tmp_path / "UFine6926", "train", tmp_path / "out")
    assert list(by_image(train)) == ["images/1.jpg"] and train[0]["target"]["captions"] == [CAP_D, CAP_C1]
    assert train[0]["target"]["person_id"] == 1                       # a numeric string id is read as int
    write_text_pedes(tmp_path / "U2", "ufine_release.json", recs, image_dir="")
    with pytest.raises(AnnotationError, match="UFine6926.json"):
        build_records("ufine6926", tmp_path / "U2", "test", tmp_path / "out")
    _, test = build_records("ufine6926", tmp_path / "U2", "test", tmp_path / "out", annotation_file="ufine_release.json")
    assert list(by_image(test)) == ["images/2.jpg"]


def test_bad_records_raise_with_index_or_are_skipped(tmp_path):
    recs = [CUHK[0],
            {"split": "train", "file_path": "train_query/p1_s2.jpg", "id": 3},                        # no captions
            {"split": "train", "captions": "one string", "file_path": "train_query/p1_s3.jpg", "id": 4},
            {"split": "train", "captions": [CAP_C], "file_path": "train_query/p11600_s14885.jpg", "id": 5},  # repeat
            {"split": "gallery", "captions": [CAP_C], "file_path": "x/y.jpg", "id": 6}]
    write_text_pedes(tmp_path / "C", "reid_raw.json", recs)
    path = str(tmp_path / "C" / "reid_raw.json")
    with pytest.raises(AnnotationError) as e:
        build_records("cuhk_pedes", tmp_path / "C", "train", tmp_path / "out")
    assert e.value.path == path and e.value.key == "record 1" and "missing field(s) ['captions']" in str(e.value)
    summary, records = build_records("cuhk_pedes", tmp_path / "C", "train", tmp_path / "out", on_error="skip")
    # record 3 describes record 0's image with other captions: both are left out, the conflict counted once
    assert (summary.images, summary.skipped) == (0, 4)
    assert any(x.startswith(f"{path} [record 3]: image imgs/train_query/p11600_s14885.jpg is listed again with "
                            "different labels") and x.endswith(f"first listed at {path} [record 0]")
               for x in summary.skip_examples)
    assert any("[record 4]" in x and "split 'gallery'" in x for x in summary.skip_examples)

    write_text_pedes(tmp_path / "J", "reid_raw.json", [], raw='[\n {"split": "train",\n  "id": 1,,\n}]')
    with pytest.raises(AnnotationError) as e:
        build_records("cuhk_pedes", tmp_path / "J", "train", tmp_path / "out")
    assert e.value.path == str(tmp_path / "J" / "reid_raw.json") and e.value.line == 3


def test_offline_llm_pairs_through_qa_file(tmp_path):
    write_text_pedes(tmp_path / "CUHK-PEDES", "reid_raw.json", CUHK)
    prompts = []

    def fake_llm(prompt):
        prompts.append(prompt)
        if "hair" in prompt.split("question according to it strictly: ")[1]:
            return "The hair is not mentioned in the description."
        return f"llm answer {len(prompts)}"

    qa_path = str(tmp_path / "qa_train.json")
    n = write_qa_file("cuhk_pedes", str(tmp_path / "CUHK-PEDES"), "train", qa_path, LLMCaptionQA(fake_llm),
                      progress=False)
    assert n == 8 + 5
    assert prompts[0].startswith(f"This is an overall appearance of a pedestrian: {CAP_A.rstrip('.')}. Please answer "
                                 "the following question according to it strictly: ")
    assert prompts[0] == QA_PROMPT.format(caption=CAP_A.rstrip("."), question=prompts[0].split("strictly: ")[1])
    with open(qa_path) as f:
        data = json.load(f)
    assert (data["dataset"], data["split"]) == ("cuhk_pedes", "train")
    assert sorted(data["items"]) == ["CUHK01/0363004", "train_query/p11600_s14885"]

    summary, records = build_records("cuhk_pedes", tmp_path / "CUHK-PEDES", "train", tmp_path / "out",
                                     qa_file=qa_path)
    r1 = by_image(records)[P1]
    assert [r["answer"] for r in r1[:2]] == [CAP_A, CAP_B]
    answers = [r["answer"] for r in r1[2:]]
    assert answers[0] == "llm answer 1" and len(answers) == 8
    # The LLM could not answer the hair question from the caption: the rule-based answer stands in.
    assert "This person has shoulder-length black hair and a ponytail." in answers

    with pytest.raises(AnnotationError) as e:
        build_records("cuhk_pedes", tmp_path / "CUHK-PEDES", "val", tmp_path / "out", qa_file=qa_path)
    assert e.value.path == qa_path and e.value.key == "split"


def test_detect_by_annotation_file(tmp_path):
    from lman_ms.data.humanins.registry import get_converter

    write_text_pedes(tmp_path / "CUHK-PEDES", "reid_raw.json", CUHK[:1])
    write_text_pedes(tmp_path / "ICFG-PEDES", "ICFG_PEDES.json", CUHK[:1])      # the README's spelling
    write_text_pedes(tmp_path / "UFine6926", "UFine6926.json", CUHK[:1], image_dir="")
    found = {name: [d for d in ("CUHK-PEDES", "ICFG-PEDES", "UFine6926") if get_converter(name).detect(str(tmp_path / d))]
             for name in ("cuhk_pedes", "icfg_pedes", "ufine6926")}
    assert found == {"cuhk_pedes": ["CUHK-PEDES"], "icfg_pedes": ["ICFG-PEDES"], "ufine6926": ["UFine6926"]}


def test_qa_seed_changes_wording_not_answers_and_reruns_are_identical(tmp_path):
    write_text_pedes(tmp_path / "CUHK-PEDES", "reid_raw.json", CUHK)
    runs = {}
    for name, kw in (("a", {}), ("b", {"workers": 2}), ("c", {"qa_seed": 1})):
        summary, records = build_records("cuhk_pedes", tmp_path / "CUHK-PEDES", "train", tmp_path / name, **kw)
        runs[name] = (records, [open(f, "rb").read() for f in summary.files])
    assert runs["a"][1] == runs["b"][1]                                   # workers do not change the bytes
    assert [r["answer"] for r in runs["a"][0]] == [r["answer"] for r in runs["c"][0]]
    assert [r["instruction"] for r in runs["a"][0]] != [r["instruction"] for r in runs["c"][0]]
