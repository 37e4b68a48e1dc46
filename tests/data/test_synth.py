"""SynthHuman: deterministic, in the real on-disk formats, consistent, and read by the real converters."""
import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import scipy.io
from PIL import Image

from lman_ms.data.synth import MANIFEST, build_synth_humanins, make_synth, synth_roots
from lman_ms.data.synth.canvas import Canvas
from lman_ms.data.synth.captions import outfit, person_clause
from lman_ms.data.synth.common import write_mat
from lman_ms.data.synth.person import EXPRESSIONS, PA100K_ATTRIBUTES, PersonSpec, pa100k_vector, sample_person
from lman_ms.data.synth.pose import ACTIONS, MPII_JOINTS, SCENE_ACTIONS, make_pose, two_bone
from lman_ms.data.synth.scene import render_portrait, render_scene

NUM, SEED = 30, 7


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth"))
    roots = make_synth(root, NUM, SEED, image_size=(96, 144))
    return root, roots


def _digest(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha1(fh.read()).hexdigest()
    return out


def _person(**kw):
    base = dict(female=False, age="adult", view="front", skin=(232, 180, 140), hair="black", top="red",
                top2="yellow", sleeves="short", top_pattern="plain", lower_kind="trousers", lower="blue",
                lower_pattern="plain", long_coat=False, boots=False, hat=None, glasses=False, bag=None,
                hold_front=False, expression="Happiness", action="running")
    base.update(kw)
    return PersonSpec(**base)


# ---- determinism and options ---------------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(synth, tmp_path):
    root, roots = synth
    again = make_synth(str(tmp_path / "again"), NUM, SEED, image_size=(96, 144))
    assert {k: os.path.relpath(v, str(tmp_path / "again")) for k, v in again.items()} == \
        {k: os.path.relpath(v, root) for k, v in roots.items()}
    assert _digest(root) == _digest(str(tmp_path / "again"))
    other = make_synth(str(tmp_path / "other"), NUM, SEED + 1, image_size=(96, 144), sources=("coco",))
    a, b = _digest(os.path.join(root, "coco")), _digest(os.path.dirname(other["coco_person"]) + "/coco")
    assert a.keys() == b.keys() and a != b


def test_rerun_removes_images_of_a_larger_run(tmp_path):
    make_synth(str(tmp_path), 6, 0, sources=("pa100k",))
    make_synth(str(tmp_path), 3, 0, sources=("pa100k",))
    assert sorted(os.listdir(tmp_path / "pa100k" / "data")) == ["000001.jpg", "000002.jpg", "000003.jpg"]


def test_bad_options_are_errors(tmp_path):
    with pytest.raises(ValueError, match="num"):
        make_synth(str(tmp_path), 0, 0)
    with pytest.raises(ValueError, match="image_size"):
        make_synth(str(tmp_path), 2, 0, image_size=(200, 100))
    with pytest.raises(KeyError, match="kinetics"):
        make_synth(str(tmp_path), 2, 0, sources=("kinetics",))
    with pytest.raises(FileNotFoundError, match=re.escape(os.path.join(str(tmp_path), MANIFEST))):
        synth_roots(str(tmp_path))


def test_mat_files_are_byte_stable_and_loadable(tmp_path):
    write_mat(str(tmp_path / "a.mat"), {"x": np.arange(6, dtype=np.uint8).reshape(2, 3)})
    write_mat(str(tmp_path / "b.mat"), {"x": np.arange(6, dtype=np.uint8).reshape(2, 3)})
    assert (tmp_path / "a.mat").read_bytes() == (tmp_path / "b.mat").read_bytes()
    np.testing.assert_array_equal(scipy.io.loadmat(str(tmp_path / "a.mat"))["x"], [[0, 1, 2], [3, 4, 5]])


# ---- geometry ------------------------------------------------------------------------------------------------------
def test_two_bone_ik_hand_computed():
    # a = b = 0.25, target 0.3 below the root: the elbow is 0.15 down and sqrt(0.25^2 - 0.15^2) = 0.2 aside.
    mid, end = two_bone((0.0, 0.0), (0.0, 0.3), 0.25, 0.25, prefer=(1.0, 0.0))
    assert mid == pytest.approx((0.2, 0.15)) and end == pytest.approx((0.0, 0.3))
    mid, _ = two_bone((0.0, 0.0), (0.0, 0.3), 0.25, 0.25, prefer=(-1.0, 0.0))
    assert mid == pytest.approx((-0.2, 0.15))
    _, end = two_bone((0.0, 0.0), (0.0, 2.0), 0.25, 0.25, prefer=(1.0, 0.0))   # out of reach: clamped
    assert end[0] == pytest.approx(0.0) and 0.49 < end[1] < 0.5


def test_front_view_puts_the_right_side_on_the_image_left():
    rng = np.random.default_rng(0)
    front = make_pose("standing", "adult", "front", rng, jitter=0.0).joints
    back = make_pose("standing", "adult", "back", rng, jitter=0.0).joints
    assert front["r_shoulder"][0] < 0 < front["l_shoulder"][0]
    assert back["r_shoulder"][0] > 0 > back["l_shoulder"][0]


def test_actions_have_distinct_limb_layouts():
    """Wrists and ankles relative to the pelvis, with the active side first: every pair of actions differs."""
    feats = {}
    for action in SCENE_ACTIONS:
        pose = make_pose(action, "adult", "front", np.random.default_rng(1), jitter=0.0)
        j, a = pose.joints, pose.active
        b = "l" if a == "r" else "r"
        o = pose.outward[a]
        feats[action] = np.array([(o * j[f"{s}_{part}"][0], j[f"{s}_{part}"][1] - j["pelvis"][1])
                                  for part in ("wrist", "ankle") for s in (a, b)]).ravel()
    names = list(feats)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            assert np.abs(feats[x] - feats[y]).max() > 0.08, (x, y)


def test_keypoints_inside_person_boxes_and_faces_inside_images():
    for k in range(40):
        rng = np.random.default_rng(k)
        n = 1 + k % 3
        specs = [sample_person(rng, action=SCENE_ACTIONS[(k + i) % len(SCENE_ACTIONS)]) for i in range(n)]
        scene = render_scene(rng, 160, 120, specs)
        boxes = []
        for q in scene.persons:
            x1, y1, x2, y2 = q.box
            assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120
            assert len(q.keypoints) == len(MPII_JOINTS)
            for x, y in q.keypoints:
                assert x1 <= x <= x2 and y1 <= y <= y2
            hx1, hy1, hx2, hy2 = q.head_box
            assert x1 <= hx1 < hx2 <= x2 and y1 <= hy1 < hy2 <= y2
            boxes.append(q.box)
        for a, b in zip(boxes, boxes[1:]):       # side-by-side slots: persons never overlap
            assert a[2] <= b[0]


def test_canvas_box_is_exactly_what_is_drawn():
    img = Image.new("RGB", (40, 30), (255, 255, 255))
    from PIL import ImageDraw
    cv = Canvas(ImageDraw.Draw(img), scale=10.0, ox=5.0, oy=2.0)
    cv.rect(0.0, 0.0, 2.0, 1.5, (0, 0, 0))          # pixels (5, 2) .. (25, 17)
    assert cv.box("person") == [5.0, 2.0, 25.0, 17.0]
    ys, xs = np.nonzero(np.asarray(img)[..., 0] == 0)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (5, 2, 25, 17)


def test_expressions_differ_in_pixels():
    faces = []
    for e in EXPRESSIONS:
        spec = _person(expression=e, action="standing")
        faces.append(np.asarray(render_portrait(np.random.default_rng(0), spec, 100, 0.30).image, dtype=np.float32))
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            changed = np.abs(faces[i] - faces[j]).max(axis=2) > 60
            assert changed.sum() >= 40, (EXPRESSIONS[i], EXPRESSIONS[j], changed.sum())


# ---- labels --------------------------------------------------------------------------------------------------------
def test_pa100k_vector_hand_computed():
    spec = _person(female=True, age="senior", view="back", hat="green", glasses=True, bag="backpack",
                   sleeves="long", top_pattern="plaid", lower_kind="skirt", lower_pattern="stripe", boots=True)
    on = {n for n, v in zip(PA100K_ATTRIBUTES, pa100k_vector(spec)) if v}
    # Glasses cannot be seen from behind, so they are not labelled.
    assert on == {"Female", "AgeOver60", "Back", "Hat", "Backpack", "LongSleeve", "UpperPlaid", "LowerStripe",
                  "Skirt&Dress", "boots"}


def test_caption_phrases_hand_computed():
    spec = _person()
    assert outfit(spec) == "a short-sleeved red shirt and blue trousers"
    assert person_clause(spec, True) == "a smiling man in a short-sleeved red shirt and blue trousers running"
    assert outfit(_person(long_coat=True, top="orange")) == "an orange coat"


# ---- the six formats, read with plain readers ------------------------------------------------------------------------
def test_wider_face_format(synth):
    root, roots = synth
    wf = roots["wider_face"]
    saw_dummy = False
    total = 0
    for split, (folder, gt) in {"train": ("WIDER_train", "wider_face_train_bbx_gt.txt"),
                                "test": ("WIDER_val", "wider_face_val_bbx_gt.txt")}.items():
        lines = open(os.path.join(wf, "wider_face_split", gt)).read().splitlines()
        i = 0
        while i < len(lines):
            name, count = lines[i], int(lines[i + 1])
            assert re.fullmatch(r"\d+--\w+/\d+_\w+\.jpg", name)
            w, h = Image.open(os.path.join(wf, folder, "images", name)).size
            rows = lines[i + 2:i + 2 + max(count, 1)]
            if count == 0:
                assert rows == ["0 0 0 0 0 0 0 0 0 0 "]
                saw_dummy = True
            for row in rows if count else []:
                x, y, bw, bh, *flags = (int(v) for v in row.split())
                assert len(flags) == 6 and flags[3] == 0
                assert 0 <= x and 0 <= y and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h
            i += 2 + max(count, 1)
            total += 1
    assert total == NUM and saw_dummy


def test_coco_format(synth):
    root, roots = synth
    coco = roots["coco_person"]
    ids = {}
    for folder in ("train2017", "val2017"):
        inst = json.load(open(os.path.join(coco, "annotations", f"instances_{folder}.json")))
        caps = json.load(open(os.path.join(coco, "annotations", f"captions_{folder}.json")))
        assert set(inst) == {"info", "licenses", "images", "annotations", "categories"}
        assert set(caps) == {"info", "licenses", "images", "annotations"}
        assert {"id": 1, "name": "person", "supercategory": "person"} in inst["categories"]
        size = {im["id"]: (im["width"], im["height"]) for im in inst["images"]}
        ids[folder] = set(size)
        for im in inst["images"]:
            assert set(im) == {"license", "file_name", "height", "width", "date_captured", "id"}
            assert Image.open(os.path.join(coco, folder, im["file_name"])).size == (im["width"], im["height"])
        for a in inst["annotations"]:
            assert set(a) == {"segmentation", "area", "iscrowd", "image_id", "bbox", "category_id", "id"}
            x, y, w, h = a["bbox"]
            W, H = size[a["image_id"]]
            assert a["iscrowd"] == 0 and w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W + 0.01 \
                and y + h <= H + 0.01
        per_image = {}
        for c in caps["annotations"]:
            assert set(c) == {"image_id", "id", "caption"} and c["caption"].endswith(".")
            per_image[c["image_id"]] = per_image.get(c["image_id"], 0) + 1
        assert set(per_image) == set(size) and all(1 <= n <= 5 for n in per_image.values())
    assert not ids["train2017"] & ids["val2017"] and len(ids["train2017"] | ids["val2017"]) == NUM


def test_pa100k_format(synth):
    root, roots = synth
    mat = scipy.io.loadmat(os.path.join(roots["pa100k"], "annotation.mat"))
    parts = ("train", "val", "test")
    assert {k for k in mat if not k.startswith("__")} == {"attributes"} | {f"{p}_images_name" for p in parts} | \
        {f"{p}_label" for p in parts}
    assert [mat["attributes"][i][0][0] for i in range(26)] == list(PA100K_ATTRIBUTES)
    names = []
    for p in parts:
        labels = mat[f"{p}_label"]
        part_names = [mat[f"{p}_images_name"][i][0][0] for i in range(len(mat[f"{p}_images_name"]))]
        assert labels.shape == (len(part_names), 26)
        col = {n: labels[:, k] for k, n in enumerate(PA100K_ATTRIBUTES)}
        assert (col["Side"] == 0).all()
        assert (col["AgeOver60"] + col["Age18-60"] + col["AgeLess18"] == 1).all()
        assert (col["Front"] + col["Back"] == 1).all() and (col["ShortSleeve"] + col["LongSleeve"] == 1).all()
        assert (col["Trousers"] + col["Shorts"] + col["Skirt&Dress"] == 1).all()
        names += part_names
    assert names == [f"{i:06d}.jpg" for i in range(1, NUM + 1)]
    assert (len(mat["train_images_name"]), len(mat["val_images_name"]), len(mat["test_images_name"])) == (24, 3, 3)
    assert all(os.path.isfile(os.path.join(roots["pa100k"], "data", n)) for n in names)


def test_rafdb_format(synth):
    root, roots = synth
    basic = roots["rafdb"]
    lines = open(os.path.join(basic, "EmoLabel", "list_patition_label.txt")).read().splitlines()
    assert len(lines) == NUM
    for i, line in enumerate(lines):
        assert re.fullmatch(r"(train_\d{5}|test_\d{4})\.jpg [1-7]", line)
        name, label = line.split()
        assert int(label) == i % 7 + 1          # balanced classes, RAF's 1-based order
        assert Image.open(os.path.join(basic, "Image", "aligned", name[:-4] + "_aligned.jpg")).size == (100, 100)
        assert os.path.isfile(os.path.join(basic, "Image", "original", name))
    assert sum(line.startswith("test_") for line in lines) == 6


def test_stanford40_format(synth):
    root, roots = synth
    s40 = roots["stanford40"]
    splits = os.path.join(s40, "ImageSplits")
    actions = open(os.path.join(splits, "actions.txt")).read().splitlines()
    assert actions[0] == "action_name\tnumber_of_images"
    counts = {a: int(n) for a, n in (line.split("\t") for line in actions[1:])}
    assert list(counts) == list(ACTIONS) and sum(counts.values()) == NUM
    train = open(os.path.join(splits, "train.txt")).read().split()
    test = open(os.path.join(splits, "test.txt")).read().split()
    assert not set(train) & set(test) and len(train) + len(test) == NUM
    for a in ACTIONS:
        per = open(os.path.join(splits, f"{a}_train.txt")).read().split()
        assert per == [f for f in train if f.rsplit("_", 1)[0] == a]
    for f in train + test:
        xml = ET.parse(os.path.join(s40, "XMLAnnotations", f[:-4] + ".xml")).getroot()
        assert xml.findtext("filename") == f
        w, h = int(xml.findtext("size/width")), int(xml.findtext("size/height"))
        assert Image.open(os.path.join(s40, "JPEGImages", f)).size == (w, h)
        (obj,) = xml.findall("object")
        assert obj.findtext("name") == "person" and obj.findtext("action") == f.rsplit("_", 1)[0]
        x1, y1, x2, y2 = (int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
        assert 1 <= x1 < x2 <= w and 1 <= y1 < y2 <= h      # 1-based pixels


def test_mpii_format(synth):
    root, roots = synth
    mp = roots["mpii"]
    val = json.load(open(os.path.join(mp, "annotations", "mpii_val.json")))
    train = json.load(open(os.path.join(mp, "annotations", "mpii_train.json")))
    assert not {e["image"] for e in val} & {e["image"] for e in train}
    for e in train + val:
        assert set(e) == {"image", "center", "scale", "joints", "joints_vis"}
        assert len(e["joints"]) == 16 and e["joints_vis"] == [1] * 16
        w, h = Image.open(os.path.join(mp, "images", e["image"])).size
        xs, ys = [p[0] for p in e["joints"]], [p[1] for p in e["joints"]]
        assert 0 <= min(xs) and max(xs) < w and 0 <= min(ys) and max(ys) < h
        # scale * 200 is the person's height, which holds every joint; center is 1-based
        half = e["scale"] * 100
        assert e["center"][1] - 1 - half - 1 <= min(ys) and max(ys) <= e["center"][1] - 1 + half + 1
    gt = scipy.io.loadmat(os.path.join(mp, "annotations", "mpii_gt_val.mat"))
    n = len(val)
    assert gt["headboxes_src"].shape == (2, 2, n) and gt["pos_gt_src"].shape == (16, 2, n)
    assert gt["jnt_missing"].shape == (16, n) and gt["dataset_joints"].shape == (1, 16)
    np.testing.assert_array_equal(gt["pos_gt_src"].transpose(2, 0, 1), np.array([e["joints"] for e in val]) + 1)
    head_top = np.array([e["joints"][9] for e in val]) + 1          # 1-based, like the head boxes
    hb = gt["headboxes_src"]
    assert ((hb[0, 0] - 1 <= head_top[:, 0]) & (head_top[:, 0] <= hb[1, 0] + 1)).all()
    assert (np.abs(head_top[:, 1] - hb[0, 1]) <= 1).all()           # head top is the top edge of the head


# ---- the real converters -------------------------------------------------------------------------------------------
def test_converters_build_expected_record_counts(synth, tmp_path):
    root, roots = synth
    out = str(tmp_path / "humanins")
    summaries, missing = build_synth_humanins(root, out)
    assert missing == []
    got = {(s.dataset, s.split): (s.images, s.records, s.skipped) for s in summaries}
    coco = os.path.join(roots["coco_person"], "annotations")
    with_person = {}
    for split, folder in (("train", "train2017"), ("test", "val2017")):
        inst = json.load(open(os.path.join(coco, f"instances_{folder}.json")))
        with_person[split] = len({a["image_id"] for a in inst["annotations"] if a["category_id"] == 1})
    n_test = 6
    # Two instructions per image, one for expressions and captions (paper Table 1 ratios); COCO train keeps only
    # images with a person, test keeps all; PA-100K train is train + val (24 + 3), test 3.
    expected = {
        ("wider_face", "train"): (24, 48, 0), ("wider_face", "test"): (n_test, 12, 0),
        ("coco_person", "train"): (with_person["train"], 2 * with_person["train"], 0),
        ("coco_person", "test"): (n_test, 12, 0),
        ("coco_captions", "train"): (24, 24, 0), ("coco_captions", "test"): (n_test, 6, 0),
        ("pa100k", "train"): (27, 54, 0), ("pa100k", "test"): (3, 6, 0),
        ("rafdb", "train"): (24, 24, 0), ("rafdb", "test"): (n_test, 6, 0),
        ("stanford40", "train"): (24, 48, 0), ("stanford40", "test"): (n_test, 12, 0),
        ("mpii", "train"): (24, 48, 0), ("mpii", "test"): (n_test, 12, 0),
    }
    assert got == expected
    stats = json.load(open(os.path.join(out, "stats.json")))
    assert stats["total"]["datasets"] == 6
    # Answers never leak into instructions: no class or expression name appears in an instruction.
    names = [a.replace("_", " ") for a in ACTIONS] + [e.lower() for e in EXPRESSIONS]
    for dirpath, _, files in os.walk(out):
        for f in files:
            if f.endswith(".jsonl"):
                for line in open(os.path.join(dirpath, f)):
                    rec = json.loads(line)
                    assert not any(n in rec["instruction"].lower() for n in names), rec["instruction"]
    # Records keep the drawn truth: Stanford 40 labels follow i mod 9, RAF-DB i mod 7.
    first = json.loads(open(os.path.join(out, "stanford40", "train-00000.jsonl")).readline())
    assert first["target"]["label_name"] == ACTIONS[0] and first["image"] == f"JPEGImages/{ACTIONS[0]}_001.jpg"


def test_label_captions_describe_each_training_picture_from_its_labels(synth, tmp_path):
    from lman_ms.data.pipeline import RecordSet
    from lman_ms.data.synth.captions import ACTION_PHRASES, EXPRESSION_WORDS
    from lman_ms.data.synth.label_captions import NAME, attribute_noun, write_label_captions
    root, _ = synth
    out = str(tmp_path / "humanins")
    build_synth_humanins(root, out)
    counts = write_label_captions(out)
    assert counts == {"rafdb": 24, "stanford40": 24, "pa100k": 27}      # one per training image, test untouched
    caps = RecordSet.load(out, "train", tasks=["caption"])
    mine = [r for r in caps.records if r["id"].startswith(NAME + "/")]
    assert len(mine) == 75 and {r["split"] for r in mine} == {"train"}
    by_id = {r["id"]: r for r in RecordSet.load(out, "train").records}
    for r in mine:
        src = by_id[r["id"][len(NAME) + 1:] + "/0"]
        assert r["image_path"] == src["image_path"] and os.path.isfile(r["image_path"])   # the source's root
        t = src["target"]
        if src["task"] == "expression_recognition":
            assert all(EXPRESSION_WORDS[t["label_name"]] in c for c in r["target"]["captions"])
        elif src["task"] == "action_recognition":
            assert all(ACTION_PHRASES[t["label_name"]] in c for c in r["target"]["captions"]), r
        else:
            on = {n for n, v in zip(t["attribute_names"], t["attributes"]) if v}
            assert all(f" {attribute_noun(on)} " in c for c in r["target"]["captions"])
            full = r["target"]["captions"][0]
            for name, word in (("Back", "from the back"), ("Hat", "a hat"), ("Glasses", "glasses"),
                               ("UpperPlaid", "plaid"), ("LowerStripe", "striped trousers"), ("Shorts", "shorts"),
                               ("boots", "boots"), ("HoldObjectsInFront", "a box held in front")):
                if word == "striped trousers" and "Trousers" not in on:
                    continue
                assert (word in full) == (name in on), (name, full)
    assert not RecordSet.load(out, "test", tasks=["caption"]).records[0]["id"].startswith(NAME)


def test_num_by_source_overrides_the_count_of_one_source(tmp_path):
    make_synth(str(tmp_path), 4, 0, sources=("pa100k", "rafdb"), num_by_source={"pa100k": 10})
    assert len(os.listdir(tmp_path / "pa100k" / "data")) == 10
    manifest = json.load(open(tmp_path / MANIFEST))
    assert manifest["num_by_source"] == {"pa100k": 10} and sum(manifest["counts"]["rafdb"].values()) == 4
    with pytest.raises(KeyError, match="kinetics"):
        make_synth(str(tmp_path), 2, 0, num_by_source={"kinetics": 3})
    with pytest.raises(ValueError, match="num_by_source"):
        make_synth(str(tmp_path), 2, 0, num_by_source={"pa100k": 0})
