"""Action converters (Stanford40, PASCAL VOC 2012 Action, UCF101, HMDB51) on tiny fixtures in the real layouts."""
import os

import cv2
import pytest

from fixtures_action import (STANFORD_ACTIONS, by_key, frame_value, grey_level, meta, records, voc_actions_xml,
                             voc_object_xml, voc_xml, write_hmdb51, write_stanford40, write_text, write_ucf101,
                             write_video, write_voc_image)
from lman_ms.data.humanins import builder, video
from lman_ms.data.humanins.errors import AnnotationError
from lman_ms.data.humanins.registry import get_converter
from lman_ms.data.humanins.video import resolve_case_insensitive, sample_indices
from lman_ms.data.humanins.voc2012_action import ACTIONS


def build(name, root, split, out, **kw):
    return builder.build(name, str(root), split, str(out), progress=False, **kw)


# ---- frame sampling ------------------------------------------------------------------------------------------------
def test_sample_indices_are_segment_centres():
    assert sample_indices(10, 4) == [1, 3, 6, 8]      # floor((i + 0.5) * 10 / 4)
    assert sample_indices(12, 4) == [1, 4, 7, 10]
    assert sample_indices(7, 1) == [3]
    assert sample_indices(3, 4) == [0, 1, 2]          # short video: every frame once, never a repeat
    assert sample_indices(0, 4) == []
    with pytest.raises(ValueError):
        sample_indices(5, 0)


def test_resolve_case_insensitive(tmp_path):
    (tmp_path / "HandstandPushups").mkdir()
    (tmp_path / "HandstandPushups" / "v_HandStandPushups_g08_c01.avi").write_bytes(b"x")
    assert (resolve_case_insensitive(str(tmp_path), "HandstandPushups/v_HandstandPushups_g08_c01.avi")
            == "HandstandPushups/v_HandStandPushups_g08_c01.avi")
    assert resolve_case_insensitive(str(tmp_path), "HandstandPushups/v_missing.avi") is None


def test_detect_recognises_each_layout(stanford, voc, ucf, hmdb):
    roots = {"stanford40": stanford, "voc2012_action": voc, "ucf101": ucf, "hmdb51": hmdb}
    for name, root in roots.items():
        assert [n for n in roots if get_converter(n).detect(str(root))] == [name]


# ---- Stanford40 ----------------------------------------------------------------------------------------------------
@pytest.fixture
def stanford(tmp_path):
    root = tmp_path / "Stanford40"
    write_stanford40(str(root), {
        "applauding_001.jpg": (40, 30, [[5, 6, 20, 25]]),
        "applauding_002.jpg": (40, 30, [[1, 1, 40, 30], [30, 20, 45, 35]]),   # 2nd box runs off the image
        "watching_TV_001.jpg": (50, 40, [[10, 10, 30, 35]]),
        "blowing_bubbles_001.jpg": (36, 48, [[2, 3, 30, 40]]),
    }, train=["applauding_001.jpg", "watching_TV_001.jpg"], test=["applauding_002.jpg", "blowing_bubbles_001.jpg"])
    return root


def test_stanford40_labels_boxes_and_splits(stanford, tmp_path):
    out = tmp_path / "out"
    s = build("stanford40", stanford, "train", out)
    assert (s.images, s.records, s.skipped) == (2, 4, 0)                 # 2 instructions per action image
    train = by_key(records(str(out), "stanford40", "train"))
    assert sorted(train) == ["applauding_001", "watching_TV_001"]
    r = train["watching_TV_001"][0]
    assert (r["image"], r["width"], r["height"]) == ("JPEGImages/watching_TV_001.jpg", 50, 40)
    assert r["target"] == {"boxes": [[9, 9, 29, 34]], "label": 2, "label_name": "watching_TV",
                           "label_names": list(STANFORD_ACTIONS)}
    assert r["answer"] == "The action of this person is watching tv."
    assert train["applauding_001"][1]["target"]["boxes"] == [[4, 5, 19, 24]]  # 1-based -> 0-based

    build("stanford40", stanford, "test", out)
    test = by_key(records(str(out), "stanford40", "test"))
    assert sorted(test) == ["applauding_002", "blowing_bubbles_001"]
    assert test["applauding_002"][0]["target"]["boxes"] == [[0, 0, 39, 29], [29, 19, 39, 29]]  # clipped to W-1, H-1
    assert test["blowing_bubbles_001"][0]["target"]["label"] == 1


def test_stanford40_takes_the_class_order_from_actions_txt(stanford, tmp_path):
    write_text(str(stanford / "ImageSplits" / "actions.txt"),
               ["action_name\tnumber_of_images", "watching_TV\t1", "applauding\t2", "blowing_bubbles\t1"])
    build("stanford40", stanford, "train", tmp_path / "out")
    r = by_key(records(str(tmp_path / "out"), "stanford40", "train"))["applauding_001"][0]
    assert (r["target"]["label"], r["target"]["label_names"][0]) == (1, "watching_TV")


def test_stanford40_bad_input_names_file_and_line(stanford, tmp_path):
    write_text(str(stanford / "ImageSplits" / "train.txt"), ["applauding_001.jpg", "dancing_001.jpg",
                                                             "watching_TV_001.jpg"])
    with pytest.raises(AnnotationError) as e:
        build("stanford40", stanford, "train", tmp_path / "out")
    assert e.value.path.endswith(os.path.join("ImageSplits", "train.txt")) and e.value.line == 2
    assert "dancing" in str(e.value)
    s = build("stanford40", stanford, "train", tmp_path / "out", on_error="skip")
    assert (s.images, s.skipped) == (2, 1)


def test_stanford40_xml_that_disagrees_with_its_file_name(stanford, tmp_path):
    xml = stanford / "XMLAnnotations" / "watching_TV_001.xml"
    xml.write_text(xml.read_text().replace("<action>watching_TV</action>", "<action>applauding</action>"))
    with pytest.raises(AnnotationError, match=r"watching_TV_001\.xml \[object 1\]: <action> 'applauding' disagrees"):
        build("stanford40", stanford, "train", tmp_path / "out")
    xml.write_text("<annotation><object><bndbox><xmin>3</xmin></bndbox></object>")   # truncated file
    with pytest.raises(AnnotationError, match=r"watching_TV_001\.xml:1: malformed XML"):
        build("stanford40", stanford, "train", tmp_path / "out")


# ---- PASCAL VOC 2012 Action -----------------------------------------------------------------------------------------
@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    write_voc_image(str(root), "2011_000001", 60, 40, [([1, 1, 30, 40], ["jumping"]),
                                                       ([31, 5, 61, 41], ["phoning", "other"])])
    write_voc_image(str(root), "2011_000003", 64, 48, [([2, 2, 20, 20], ["reading"]),
                                                       ([21, 4, 50, 45], ["walking"])])
    write_voc_image(str(root), "2011_000002", 50, 50, [([11, 12, 40, 50], ["ridingbike"])])
    write_text(str(root / "ImageSets" / "Action" / "train.txt"), ["2011_000001", "2011_000003 2"])
    write_text(str(root / "ImageSets" / "Action" / "val.txt"), ["2011_000002"])
    return root


def test_voc2012_action_one_sample_per_person(voc, tmp_path):
    out = tmp_path / "out"
    s = build("voc2012_action", voc, "train", out)
    assert (s.images, s.records) == (3, 6)
    recs = by_key(records(str(out), "voc2012_action", "train"))
    assert sorted(recs) == ["2011_000001/1", "2011_000001/2", "2011_000003/2"]
    p1, p2 = recs["2011_000001/1"][0]["target"], recs["2011_000001/2"][0]["target"]
    assert p1 == {"boxes": [[0, 0, 29, 39]], "label": ACTIONS.index("jumping"), "label_name": "jumping",
                  "label_names": list(ACTIONS), "labels": [1]}
    # phoning + other: the named action is the label; the box is clipped to the 60x40 image
    assert (p2["label_name"], p2["labels"], p2["boxes"]) == ("phoning", [0, 2], [[30, 4, 59, 39]])
    assert recs["2011_000003/2"][0]["target"]["label_name"] == "walking"   # "<id> <object index>" line: person 2
    assert recs["2011_000001/1"][0]["image"] == "JPEGImages/2011_000001.jpg"
    assert ACTIONS[0] == "other" and len(ACTIONS) == 11

    build("voc2012_action", voc, "test", out)                              # test = the official val list
    test = by_key(records(str(out), "voc2012_action", "test"))
    assert list(test) == ["2011_000002/1"]
    assert test["2011_000002/1"][0]["target"]["boxes"] == [[10, 11, 39, 49]]


def test_voc2012_action_bad_input(voc, tmp_path):
    xml = voc / "Annotations" / "2011_000003.xml"
    xml.write_text(voc_xml("2011_000003.jpg", 64, 48, [
        voc_object_xml([2, 2, 20, 20], voc_actions_xml(["reading"])),
        voc_object_xml([21, 4, 50, 45], voc_actions_xml(["walking"]).replace("<walking>1<", "<walking>yes<"))]))
    with pytest.raises(AnnotationError, match=r"2011_000003\.xml \[object 2\]: <walking> must be 0 or 1"):
        build("voc2012_action", voc, "train", tmp_path / "out")
    write_text(str(voc / "ImageSets" / "Action" / "train.txt"), ["2011_000001", "2011_000001 7"])
    with pytest.raises(AnnotationError, match=r"object index 7 but the file has 2 objects"):
        build("voc2012_action", voc, "train", tmp_path / "out")
    s = build("voc2012_action", voc, "train", tmp_path / "out", on_error="skip")
    assert (s.images, s.skipped) == (2, 1)


# ---- UCF101 --------------------------------------------------------------------------------------------------------
UCF_CLASSES = ("ApplyEyeMakeup", "HandstandPushups", "YoYo")
UCF_VIDEOS = {"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi": 10, "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi": 7,
              "HandstandPushups/v_HandStandPushups_g08_c01.avi": 3,  # the release's capital S
              "YoYo/v_YoYo_g09_c02.avi": 5, "YoYo/v_YoYo_g01_c01.avi": 12}
UCF_TRAIN1 = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "HandstandPushups/v_HandstandPushups_g08_c01.avi",
              "YoYo/v_YoYo_g09_c02.avi"]
UCF_TEST1 = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "YoYo/v_YoYo_g01_c01.avi"]


@pytest.fixture
def ucf(tmp_path):
    root = tmp_path / "ucf101"
    write_ucf101(str(root), UCF_CLASSES, UCF_VIDEOS, train={1: UCF_TRAIN1, 2: UCF_TEST1},
                 test={1: UCF_TEST1, 2: UCF_TRAIN1})
    return root


def test_ucf101_samples_frames_of_the_official_split(ucf, tmp_path):
    out = tmp_path / "out"
    s = build("ucf101", ucf, "train", out, frames_per_video=4)
    assert (s.images, s.records, s.skipped) == (4 + 3 + 4, 22, 0)
    recs = records(str(out), "ucf101", "train")
    frames = {r["id"].split("/", 2)[2].rsplit("/", 1)[0]: r for r in recs}
    expected = {"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01": [1, 3, 6, 8],     # 10 frames -> segment centres
                "HandstandPushups/v_HandstandPushups_g08_c01": [0, 1, 2],    # 3 frames -> all of them
                "YoYo/v_YoYo_g09_c02": [0, 1, 3, 4]}                         # 5 frames
    assert sorted(frames) == sorted(f"{v}/{i}" for v, idx in expected.items() for i in idx)
    m = meta(str(out), "ucf101", "train")
    assert m["image_root"] == os.path.abspath(out / "ucf101")
    for video, indices in expected.items():
        for i in indices:
            r = frames[f"{video}/{i}"]
            assert r["image"] == f"frames/{video}/img_{i + 1:05d}.jpg"
            assert (r["width"], r["height"]) == (32, 24)
            assert abs(grey_level(os.path.join(m["image_root"], r["image"])) - frame_value(i)) < 3
    r = frames["HandstandPushups/v_HandstandPushups_g08_c01/2"]
    assert r["target"] == {"label": 1, "label_name": "HandstandPushups", "label_names": list(UCF_CLASSES),
                           "video": "UCF-101/HandstandPushups/v_HandstandPushups_g08_c01.avi", "frame_index": 2}
    assert r["answer"] == "The action of this person is handstand pushups."

    build("ucf101", ucf, "test", out, frames_per_video=4)
    test = records(str(out), "ucf101", "test")
    assert {r["target"]["video"] for r in test} == {f"UCF-101/{v}" for v in UCF_TEST1}   # never a train video
    assert sorted({r["target"]["frame_index"] for r in test if "YoYo" in r["image"]}) == [1, 4, 7, 10]


def test_ucf101_split_id_and_rerun_is_byte_identical(ucf, tmp_path):
    out = tmp_path / "out"
    build("ucf101", ucf, "test", out, frames_per_video=2, split_id=2)
    first = (out / "ucf101" / "test-00000.jsonl").read_bytes()
    frame = out / "ucf101" / "frames" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01" / "img_00008.jpg"
    frame_bytes = frame.read_bytes()                                         # 10 frames, k=2 -> indices 2 and 7
    build("ucf101", ucf, "test", out, frames_per_video=2, split_id=2, workers=2)
    assert (out / "ucf101" / "test-00000.jsonl").read_bytes() == first
    assert frame.read_bytes() == frame_bytes
    assert {r["target"]["video"] for r in records(str(out), "ucf101", "test")} == {f"UCF-101/{v}" for v in UCF_TRAIN1}
    # Split 1 lists the same video for training with another rate: both builds' frames stay valid.
    build("ucf101", ucf, "train", out, frames_per_video=1, split_id=1)
    assert sorted(os.listdir(frame.parent)) == ["img_00003.jpg", "img_00006.jpg", "img_00008.jpg"]
    for split in ("train", "test"):
        for r in records(str(out), "ucf101", split):
            assert os.path.isfile(out / "ucf101" / r["image"])


def test_frame_count_in_the_header_is_not_trusted(tmp_path, monkeypatch):
    """A container that claims more frames than it holds: indices are recomputed from the decoded stream."""
    path = str(tmp_path / "v.avi")
    write_video(path, 10)
    real_open = video._open

    class Overclaiming:
        def __init__(self, cap):
            self.cap = cap

        def get(self, prop):
            return 20.0 if prop == cv2.CAP_PROP_FRAME_COUNT else self.cap.get(prop)

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(video, "_open", lambda p: Overclaiming(real_open(p)))
    got = video.sample_frames(path, 4)
    assert [i for i, _ in got] == [1, 3, 6, 8]                 # not [2, 7, 12, 17] from the claimed 20
    assert [round(float(f.mean())) for _, f in got] == [frame_value(i) for i in (1, 3, 6, 8)]


def test_ucf101_bad_list_line_and_corrupt_video(ucf, tmp_path):
    lists = ucf / "ucfTrainTestlist"
    bad = UCF_TRAIN1[:1] + ["YoYo/v_YoYo_g09_c02.avi 1"]
    write_text(str(lists / "trainlist01.txt"), [f"{bad[0]} 1", bad[1]], "\r\n")
    with pytest.raises(AnnotationError) as e:
        build("ucf101", ucf, "train", tmp_path / "out")
    assert e.value.path.endswith("trainlist01.txt") and e.value.line == 2 and "disagrees" in str(e.value)

    write_text(str(lists / "trainlist01.txt"), [f"{v} {UCF_CLASSES.index(v.split('/')[0]) + 1}"
                                                for v in UCF_TRAIN1 + ["YoYo/v_YoYo_g10_c01.avi"]], "\r\n")
    (ucf / "UCF-101" / "YoYo" / "v_YoYo_g10_c01.avi").write_bytes(b"RIFF\x00\x00not a video" * 8)
    with pytest.raises(AnnotationError, match=r"v_YoYo_g10_c01\.avi: not a readable video"):
        build("ucf101", ucf, "train", tmp_path / "out", frames_per_video=1)
    s = build("ucf101", ucf, "train", tmp_path / "out", frames_per_video=1, on_error="skip")
    assert (s.images, s.skipped) == (3, 1)
    assert "v_YoYo_g10_c01.avi" in s.skip_examples[0]


# ---- HMDB51 --------------------------------------------------------------------------------------------------------
HMDB_VIDEOS = {"brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi": 6,
               "brush_hair/Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi": 4,
               "cartwheel/Cartwheel_cartwheel_f_cm_np1_le_med_0.avi": 8,
               "wave/wave_hello_wave_u_nm_np1_fr_med_0.avi": 5}
HMDB_SPLITS = {
    "wave": {1: [("wave_hello_wave_u_nm_np1_fr_med_0.avi", 0)], 2: [("wave_hello_wave_u_nm_np1_fr_med_0.avi", 1)]},
    "brush_hair": {1: [("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 1),
                       ("Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi", 2)],
                   2: [("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 2),
                       ("Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi", 1)]},
    "cartwheel": {1: [("Cartwheel_cartwheel_f_cm_np1_le_med_0.avi", 1)],
                  2: [("Cartwheel_cartwheel_f_cm_np1_le_med_0.avi", 0)]},
}


@pytest.fixture
def hmdb(tmp_path):
    root = tmp_path / "hmdb51"
    write_hmdb51(str(root), HMDB_VIDEOS, HMDB_SPLITS)
    return root


def test_hmdb51_flags_and_sorted_classes(hmdb, tmp_path):
    out = tmp_path / "out"
    s = build("hmdb51", hmdb, "train", out, frames_per_video=2)
    assert (s.images, s.records) == (4, 8)
    recs = records(str(out), "hmdb51", "train")
    got = sorted((r["target"]["label_name"], r["target"]["frame_index"]) for r in recs[::2])
    assert got == [("brush_hair", 1), ("brush_hair", 4), ("cartwheel", 2), ("cartwheel", 6)]  # 6 and 8 frames
    assert recs[0]["target"]["label_names"] == ["brush_hair", "cartwheel", "wave"]
    cart = [r for r in recs if r["target"]["label_name"] == "cartwheel"][0]
    assert cart["target"]["label"] == 1
    assert cart["target"]["video"] == "hmdb51_org/cartwheel/Cartwheel_cartwheel_f_cm_np1_le_med_0.avi"

    build("hmdb51", hmdb, "test", out, frames_per_video=2)
    test = records(str(out), "hmdb51", "test")
    assert {r["target"]["video"].split("/")[-1] for r in test} == {
        "Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi"}          # flag 0 (wave) is in neither split
    assert sorted({r["target"]["frame_index"] for r in test}) == [1, 3]      # 4 frames

    build("hmdb51", hmdb, "train", out, frames_per_video=1, split_id=2)
    assert {r["target"]["label_name"] for r in records(str(out), "hmdb51", "train")} == {"brush_hair", "wave"}


def test_hmdb51_bad_flag_names_file_and_line(hmdb, tmp_path):
    split = hmdb / "testTrainMulti_7030_splits" / "cartwheel_test_split1.txt"
    write_text(str(split), ["Cartwheel_cartwheel_f_cm_np1_le_med_0.avi 1 ", "Another_cartwheel_video.avi 5 "])
    with pytest.raises(AnnotationError) as e:
        build("hmdb51", hmdb, "train", tmp_path / "out", frames_per_video=1)
    assert e.value.path == str(split) and e.value.line == 2
    s = build("hmdb51", hmdb, "train", tmp_path / "out", frames_per_video=1, on_error="skip")
    assert (s.images, s.skipped) == (2, 1)
    # A line that points outside the dataset would make the build write frames outside its own folder.
    write_text(str(split), ["Cartwheel_cartwheel_f_cm_np1_le_med_0.avi 1 ", "../../../escape.avi 1 "])
    with pytest.raises(AnnotationError, match=r"cartwheel_test_split1\.txt:2: video path .* leaves the dataset"):
        build("hmdb51", hmdb, "train", tmp_path / "out", frames_per_video=1)


def test_video_missing_file_is_located(hmdb, tmp_path):
    os.unlink(hmdb / "hmdb51_org" / "cartwheel" / "Cartwheel_cartwheel_f_cm_np1_le_med_0.avi")
    with pytest.raises(AnnotationError, match=r"Cartwheel_cartwheel_f_cm_np1_le_med_0\.avi: video file not found "
                                              r"\(listed in .*cartwheel_test_split1\.txt:1\)"):
        build("hmdb51", hmdb, "train", tmp_path / "out", frames_per_video=1)
    write_video(str(hmdb / "hmdb51_org" / "cartwheel" / "Cartwheel_cartwheel_f_cm_np1_le_med_0.avi"), 2)
    assert build("hmdb51", hmdb, "train", tmp_path / "out", frames_per_video=1).images == 2
