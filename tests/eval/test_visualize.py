"""Drawn answers land as PNG files with the expected colours at the expected pixels."""
from PIL import Image

from lman_ms.eval.parsers import parse_answer
from lman_ms.eval.visualize import (BONE_COLOUR, BOX_COLOUR, JOINT_COLOUR, TEXT_BG, draw_answer, save_png,
                                    skeleton_for, visualize_answer)

AIC = ["right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist", "right_hip",
       "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck"]


def _png(tmp_path, img):
    path = tmp_path / "vis" / "out.png"
    save_png(img, str(path))
    with Image.open(path) as f:
        assert f.format == "PNG"
        return f.convert("RGB")


def test_boxes(tmp_path):
    base = Image.new("RGB", (100, 100), (255, 255, 255))
    value = parse_answer("face_detection", "There is 1 face in the picture. It is located in: [10, 10, 50, 50].",
                         {}).value
    out = _png(tmp_path, draw_answer(base, "face_detection", value))
    assert out.getpixel((10, 30)) == BOX_COLOUR and out.getpixel((50, 30)) == BOX_COLOUR  # left / right edges
    assert out.getpixel((30, 10)) == BOX_COLOUR
    assert out.getpixel((45, 45)) == (255, 255, 255)  # inside stays untouched
    assert base.getpixel((10, 30)) == (255, 255, 255)  # the input image is not modified


def test_keypoints_and_skeleton(tmp_path):
    target = {"keypoint_names": AIC}
    text = "There is 1 person in the picture. Person 1: head top [70, 20], neck [70, 60], right wrist [10, 90]."
    value = parse_answer("pose_estimation", text, target).value
    out = _png(tmp_path, draw_answer(Image.new("RGB", (100, 100)), "pose_estimation", value, target))
    assert out.getpixel((70, 20)) == JOINT_COLOUR and out.getpixel((70, 60)) == JOINT_COLOUR
    assert out.getpixel((70, 40)) == BONE_COLOUR  # head top - neck bone, halfway
    assert out.getpixel((40, 75)) == (0, 0, 0)  # the wrist's bones need the elbow, which is not given
    assert out.getpixel((10, 90)) == JOINT_COLOUR


def test_labels_and_skeleton_tables(tmp_path):
    target = {"label_names": ["Surprise", "Happiness"]}
    out = _png(tmp_path, draw_answer(Image.new("RGB", (120, 40), (200, 200, 200)), "expression_recognition", 1,
                                     target))
    assert out.getpixel((1, 1)) == TEXT_BG and out.getpixel((110, 35)) == (200, 200, 200)
    assert len(skeleton_for(AIC)) == 14
    assert len(skeleton_for(["r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
                             "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder",
                             "l_elbow", "l_wrist"])) == 15
    assert skeleton_for(["foo", "bar"]) == []


def test_visualize_answer_from_a_jpeg(tmp_path):
    Image.new("RGB", (64, 48), (255, 255, 255)).save(tmp_path / "img.jpg", quality=95)
    parsed = visualize_answer(str(tmp_path / "img.jpg"), "pedestrian_detection",
                              "There is 1 person in the picture. It is located in: [5, 5, 40, 40].", {},
                              str(tmp_path / "out.png"))
    assert parsed.value == [[5, 5, 40, 40]]
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (64, 48) and out.convert("RGB").getpixel((5, 20)) == BOX_COLOUR
    unread = visualize_answer(str(tmp_path / "img.jpg"), "pedestrian_detection", "???", {}, str(tmp_path / "u.png"))
    assert unread.value is None
    with Image.open(tmp_path / "u.png") as out:
        assert out.convert("RGB").getpixel((1, 1)) == TEXT_BG  # "(answer not understood)" strip
