"""The evaluation driver and ``tools/evaluate.py`` end to end on a small HumanIns record folder."""
import json
import os
import subprocess
import sys

import pytest

from lman_ms.data.humanins.answers import answer_for
from lman_ms.data.humanins.errors import AnnotationError
from lman_ms.eval.evaluate import DATASET_METRICS, evaluate, load_predictions, load_references

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAF = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
REGISTRY_NAMES = ("stanford40 ucf101 voc2012_action hmdb51 cuhk_sysu prw coco_person citypersons caltech pa100k "
                  "market1501_attr dukemtmc_attr cuhk_pedes icfg_pedes ufine6926 rafdb expw wider_face fddb aic_pose "
                  "mpii").split()


def _rec(dataset, task, key, target):
    return {"id": f"{dataset}/test/{key}/0", "task": task, "dataset": dataset, "split": "test",
            "image": f"{key}.jpg", "width": 640, "height": 480, "instruction": "...",
            "answer": answer_for(task, target), "target": target}


def _records():
    recs = []
    for i, name in enumerate(["Happiness", "Happiness", "Anger", "Sadness"]):
        recs.append(_rec("rafdb", "expression_recognition", f"test_{i}",
                         {"label": RAF.index(name), "label_name": name, "label_names": RAF}))
    recs.append(_rec("wider_face", "face_detection", "0_Parade_1",
                     {"boxes": [[10, 10, 70, 70], [100, 10, 120, 30]]}))
    attr = ["Female", "Hat", "Backpack"]
    for i, a in enumerate([[1, 0, 1], [0, 1, 0]]):
        recs.append(_rec("pa100k", "pedestrian_attribute", f"{i:06d}", {"attributes": a, "attribute_names": attr}))
    joints = ["head_top", "r_shoulder", "pelvis"]
    recs.append(_rec("mpii", "pose_estimation", "000001163",
                     {"keypoints": [[[100, 50, 1], [90, 120, 1], [100, 200, 1]]], "keypoint_names": joints,
                      "head_boxes": [[80, 30, 120, 80]]}))
    ucf = ["ApplyEyeMakeup", "Archery"]
    for f in range(3):
        recs.append(_rec("ucf101", "action_recognition", f"v_ApplyEyeMakeup_g01_c01/{f}",
                         {"label": 0, "label_name": "ApplyEyeMakeup", "label_names": ucf,
                          "video": "v_ApplyEyeMakeup_g01_c01", "frame_index": f}))
    # description datasets carry their captions as question/answer pairs, not as a templated answer
    recs.append(dict(_rec("mpii", "pose_estimation", "x", recs[-4]["target"]), id="cuhk_pedes/test/p1/0",
                     dataset="cuhk_pedes", task="pedestrian_attribute", answer="A man in a red coat.",
                     target={"captions": ["A man in a red coat."]}))
    return recs


def _predictions(recs):
    by_id = {r["id"]: r for r in recs}
    p = {rid: r["answer"] for rid, r in by_id.items()}
    p["rafdb/test/test_1/0"] = "She looks sad."                     # wrong class
    p["rafdb/test/test_2/0"] = "This person seems angry!"            # paraphrase of Anger: right
    del p["rafdb/test/test_3/0"]                                     # missing: a parse failure
    p["wider_face/test/0_Parade_1/0"] = "There is 1 face. It is located in: (10.0, 10.0, 70.0, 70.0)."
    p["pa100k/test/000001/0"] = "The attributes of this person are: hat, backpack, sunglasses."  # read in part
    p["ucf101/test/v_ApplyEyeMakeup_g01_c01/1/0"] = "The action of this person is archery."
    p["cuhk_pedes/test/p1/0"] = "A woman in a red coat."             # gender wrong, coat colour right
    p["extra/0"] = "an answer for a record that does not exist"
    return p


def _write(tmp_path, recs, preds):
    ref_dir = tmp_path / "humanins"
    for ds in {r["dataset"] for r in recs}:
        (ref_dir / ds).mkdir(parents=True)
        with open(ref_dir / ds / "test-00000.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs if r["dataset"] == ds)
    with open(tmp_path / "pred.jsonl", "w") as f:
        f.writelines(json.dumps({"id": k, "answer": v}) + "\n" for k, v in preds.items())
    return ref_dir, tmp_path / "pred.jsonl"


EXPECTED = {
    "rafdb": {"acc": 0.5, "mean_class_acc": 0.5, "parse_failures": 1},
    "wider_face": {"AP_easy": 1.0, "AP_medium": 1.0, "AP_hard": 0.5, "parse_failures": 0},
    "pa100k": {"mA": (1 + 1 + 0.5) / 3,  # Backpack: positives 1/1, negatives 0/1
               "Accu": 0.75, "Prec": 0.75, "Recall": 1.0, "F1": 1.5 / 1.75,
               "parse_failures": 0},
    "mpii": {"PCKh@0.5": 1.0, "parse_failures": 0},
    "ucf101": {"top1": 1.0, "acc": 2 / 3, "parse_failures": 0},
    # stated by the reference "A man in a red coat.": female 0 and the 11 upper-body colours (red 1, others 0).
    # The prediction says female: that attribute's only (negative) half is 0, the 11 colours are right -> mA 11/12;
    # G = {red}, Y = {red, female} -> Accu 1/2, Prec 1/2, Recall 1, F1 2/3.
    "cuhk_pedes": {"mA": 11 / 12, "Accu": 0.5, "Prec": 0.5, "Recall": 1.0, "F1": 2 / 3, "parse_failures": 0},
}


def _check(metrics):
    assert set(metrics) == set(EXPECTED)
    for ds, m in EXPECTED.items():
        assert metrics[ds] == pytest.approx(m), ds


def test_every_registry_dataset_has_metrics():
    assert set(DATASET_METRICS) == set(REGISTRY_NAMES)


def test_library_hand_computed():
    recs = _records()
    ev = evaluate([dict(r, _where="mem") for r in recs], _predictions(recs), progress=False)
    _check(ev.to_json())
    assert ev.unmatched_predictions == 1
    assert ev.results["pa100k"].notes == ["1 answer(s) read in part (some boxes, joints or attributes skipped)"]
    assert ev.results["rafdb"].details["per_class_acc"] == {"Happiness": 0.5, "Sadness": 0.0, "Anger": 1.0}


def test_cli_end_to_end(tmp_path):
    recs = _records()
    ref_dir, pred = _write(tmp_path, recs, _predictions(recs))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate.py"), "--predictions", str(pred),
                          "--references", str(ref_dir), "--json", str(tmp_path / "m.json"),
                          "--out", str(tmp_path / "r.md"), "--split", "test", "--no-progress"],
                         capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr
    _check(json.loads((tmp_path / "m.json").read_text()))
    report = (tmp_path / "r.md").read_text()
    assert report == out.stdout
    assert "|  | ucf101 | pa100k | rafdb | wider_face | mpii |" in report  # Table 2 order, then the rest
    assert "| value | 100.00 | 83.33 | 50.00 | 100.00 | 100.00 |" in report
    assert "| pa100k | 2 | 83.33 | 75.00 | 75.00 | 100.00 | 85.71 | 0 |" in report
    assert "| Anger | Happiness | Sadness | Average |" in report and "| 100.00 | 50.00 | 0.00 | 50.00 |" in report
    assert "face-height fallback" in report and "rafdb/test/test_3/0: no prediction" in report


def test_bad_input_names_file_and_line(tmp_path):
    recs = _records()
    preds = _predictions(recs)
    ref_dir, pred = _write(tmp_path, recs, preds)
    with open(pred, "a") as f:
        f.write('{"id": "x", "answer": \n')
    bad = len(preds) + 1
    with pytest.raises(AnnotationError, match=rf"pred\.jsonl:{bad}: invalid JSON"):
        load_predictions(str(pred))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate.py"), "--predictions", str(pred),
                          "--references", str(ref_dir), "--no-progress"], capture_output=True, text=True,
                         cwd=str(tmp_path), timeout=300)
    assert out.returncode == 1 and f"pred.jsonl:{bad}: invalid JSON" in out.stderr
    (tmp_path / "dup.jsonl").write_text('{"id": "a", "answer": "x"}\n\n{"id": "a", "answer": "y"}\n')
    with pytest.raises(AnnotationError, match=r"dup\.jsonl:3: duplicate prediction for id 'a' \(first at .*:1\)"):
        load_predictions(str(tmp_path / "dup.jsonl"))
    (tmp_path / "ref.jsonl").write_text(json.dumps({"id": "r", "task": "face_detection", "dataset": "fddb"}) + "\n")
    with pytest.raises(AnnotationError, match=r"ref\.jsonl:1: missing key\(s\) \['target'\]"):
        load_references(str(tmp_path / "ref.jsonl"))
    with pytest.raises(FileNotFoundError):
        load_references(str(tmp_path / "nowhere"))
    train = dict(json.loads((tmp_path / "ref.jsonl").read_text()), target={}, split="train")
    (tmp_path / "ref.jsonl").write_text(json.dumps(train) + "\n" + json.dumps(dict(train, id="t", split="test")) + "\n")
    assert [r["id"] for r in load_references(str(tmp_path / "ref.jsonl"), split="test")] == ["t"]


def test_bad_targets_name_record(tmp_path):
    mpii = [r for r in _records() if r["dataset"] == "mpii"][0]
    mpii["target"]["head_boxes"] = []
    raf = [r for r in _records() if r["dataset"] == "rafdb"][0]
    del raf["target"]["label_names"]
    for rec, msg in ((mpii, r"one head box per person: 1 persons, 0 head_boxes"),
                     (raf, r"target has no 'label_names'")):
        path = tmp_path / f"{rec['dataset']}.jsonl"
        path.write_text(json.dumps(rec) + "\n")
        with pytest.raises(AnnotationError, match=rf"{rec['dataset']}\.jsonl:1 \[{rec['id']}\]: .*{msg}"):
            evaluate(load_references(str(path)), {rec["id"]: rec["answer"]}, progress=False)


def test_detection_and_oks_families():
    aic = ["right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist", "right_hip",
           "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck"]
    person = [[100 + 5 * k, 50 + 10 * k, 2] for k in range(14)]
    recs = [
        _rec("coco_person", "pedestrian_detection", "1", {"boxes": [[0, 0, 10, 10], [50, 50, 80, 90]],
                                                          "ignore_boxes": []}),
        _rec("citypersons", "pedestrian_detection", "a", {"boxes": [[0, 0, 41, 100]], "visibility": [1.0],
                                                          "ignore_boxes": [[200, 0, 300, 100]]}),
        _rec("fddb", "face_detection", "img_1", {"boxes": [[40, 40, 60, 60]], "ellipses": [[10, 10, 0.0, 50, 50]]}),
        _rec("aic_pose", "pose_estimation", "x", {"keypoints": [person], "keypoint_names": aic,
                                                  "boxes": [[90, 40, 200, 200]]}),
    ]
    preds = {r["id"]: r["answer"] for r in recs}
    # COCO: the first box found, the second missed -> precision 1 up to recall .5: 51 of 101 points
    preds["coco_person/test/1/0"] = "There is 1 person. It is located in: [0, 0, 10, 10]."
    # CityPersons: the person found, plus a detection on the ignore region (not a false positive) -> MR 0
    preds["citypersons/test/a/0"] = "Persons at [0, 0, 41, 100] and [210, 0, 251, 100]."
    # FDDB: a loose box, IoU .59 with the ellipse's box but .47 with the ellipse -> not a detection
    preds["fddb/test/img_1/0"] = "There is 1 face in the picture. It is located in: [37, 37, 63, 63]."
    ev = evaluate(recs, preds, progress=False).to_json()
    assert ev["coco_person"] == pytest.approx({"AP": 51 / 101, "AP50": 51 / 101, "parse_failures": 0})
    assert ev["citypersons"] == {"MR-2": 0.0, "parse_failures": 0}
    assert ev["fddb"] == {"TPR@1000FP": 0.0, "parse_failures": 0}
    assert ev["aic_pose"] == {"OKS-mAP": 1.0, "parse_failures": 0}
