"""COCO box AP against pycocotools on fixture files written in the COCO json formats."""
import contextlib
import io
import json
import math

import numpy as np
import pytest

from lman_ms.eval.metrics.boxes import DetImage, overlaps
from lman_ms.eval.metrics.coco_ap import coco_ap

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _fixture(seed):
    """Images with persons, jittered/duplicated/false detections and crowd regions; distinct scores."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(7):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(20, 120, (n, 2))
        gt = np.concatenate([xy, xy + wh], 1).round(1)
        dets = [g + rng.normal(0, rng.choice([2, 8, 20]), 4) for g in gt if rng.random() < 0.8]
        dets += [gt[0] + rng.normal(0, 3, 4)] if n and rng.random() < 0.5 else []  # duplicate
        for _ in range(int(rng.integers(0, 3))):  # false positives
            p = rng.uniform(0, 300, 2)
            dets.append(np.concatenate([p, p + rng.uniform(20, 80, 2)]))
        crowd = []
        if rng.random() < 0.4:
            p = rng.uniform(0, 200, 2)
            crowd = [np.concatenate([p, p + 150])]
            dets.append(crowd[0][:2].tolist() + (crowd[0][:2] + 30).tolist())  # a small box inside the crowd
        dets = np.array([[min(d[0], d[2]), min(d[1], d[3]), max(d[0], d[2]), max(d[1], d[3])] for d in dets])
        # distinct scores, interleaved across images, so that no tie order is involved
        scores = rng.permutation(len(dets)) / 10 + rng.random(len(dets)) / 100 + rng.random()
        images.append(DetImage.make(gt, dets.reshape(-1, 4), scores, crowd))
    return images


def _pycocotools(images, tmp_path):
    gt_json = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    results = []
    for i, img in enumerate(images, 1):
        gt_json["images"].append({"id": i, "width": 640, "height": 480, "file_name": f"{i:012d}.jpg"})
        for boxes, crowd in ((img.gt, 0), (img.ignore, 1)):
            for b in boxes:
                w, h = b[2] - b[0], b[3] - b[1]
                gt_json["annotations"].append({"id": len(gt_json["annotations"]) + 1, "image_id": i,
                                               "category_id": 1, "bbox": [b[0], b[1], w, h], "area": w * h,
                                               "iscrowd": crowd})
        for b, s in zip(img.dets, img.scores):
            results.append({"image_id": i, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                            "score": float(s)})
    (tmp_path / "instances_val.json").write_text(json.dumps(gt_json))
    (tmp_path / "results.json").write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "instances_val.json"))
        ev = COCOeval(gt, gt.loadRes(str(tmp_path / "results.json")), "bbox")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_pycocotools(seed, tmp_path):
    images = _fixture(seed)
    if seed < 3:  # these fixtures include crowd regions and images without any person
        assert any(len(i.ignore) for i in images) and any(not len(i.gt) for i in images)
    ours = coco_ap(images)
    ref = _pycocotools(images, tmp_path)
    assert ours["AP"] == pytest.approx(ref[0], abs=1e-9)
    assert ours["AP50"] == pytest.approx(ref[1], abs=1e-9)
    assert ours["AP75"] == pytest.approx(ref[2], abs=1e-9)


def test_hand_computed_single_image():
    # gt A hit exactly (score .9), a false positive (.8), gt B hit exactly (.7): precision 1 up to recall .5,
    # then 2/3 from recall .5 to 1 -> 51 points at 1 and 50 at 2/3, the same for every IoU threshold.
    img = DetImage.make([[0, 0, 10, 10], [20, 20, 30, 30]],
                        [[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0.9, 0.8, 0.7])
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert coco_ap([img]) == pytest.approx({"AP": expected, "AP50": expected, "AP75": expected})


def test_edge_cases():
    assert all(math.isnan(v) for v in coco_ap([]).values())  # no ground truth: undefined, not 0
    # ground truth but no predictions at all: AP 0
    assert coco_ap([DetImage.make([[0, 0, 10, 10]], [])])["AP"] == 0.0
    # only detections on an ignore region: ignored, so the one real box is missed, not a false positive
    img = DetImage.make([[100, 100, 110, 110]], [[0, 0, 5, 5], [100, 100, 110, 110]], [0.9, 0.5],
                        ignore=[[0, 0, 50, 50]])
    assert coco_ap([img])["AP"] == pytest.approx(1.0)
    # a duplicate of a matched box is a false positive
    dup = DetImage.make([[0, 0, 10, 10]], [[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8])
    assert coco_ap([dup])["AP"] == pytest.approx(1.0)  # the duplicate comes after recall 1 is reached
    # a false positive ranked above the only hit halves the precision at every recall point
    fp_first = DetImage.make([[0, 0, 10, 10]], [[0, 0, 10, 10], [40, 40, 50, 50]], [0.8, 0.9])
    assert coco_ap([fp_first])["AP"] == pytest.approx(0.5)


def test_overlaps_crowd_and_plus_one():
    iou = overlaps([[0, 0, 10, 10]], [[5, 0, 15, 10], [0, 0, 100, 100]], crowd=[False, True])
    assert iou[0, 0] == pytest.approx(50 / 150)
    assert iou[0, 1] == pytest.approx(1.0)  # intersection over the detection's own area
    assert overlaps([[0, 0, 9, 9]], [[0, 0, 9, 9]], plus_one=True)[0, 0] == 1.0
    assert overlaps([[0, 0, 1, 1]], [[1, 1, 2, 2]], plus_one=True)[0, 0] == pytest.approx(1 / 7)


def test_max_dets_cut_matches_pycocotools(tmp_path):
    # 105 detections on one image: pycocotools keeps the 100 best-scored. Two hits rank first, three last (cut),
    # so recall stops at 2/5 with precision 1: 41 of the 101 recall points.
    rng = np.random.default_rng(5)
    gt = [[10 * i, 0, 10 * i + 8, 8] for i in range(5)]
    fps = [[500 + i, 500, 520 + i, 520] for i in range(100)]
    scores = np.r_[0.99, 0.98, rng.uniform(0, 0.1, 3), rng.uniform(0.5, 0.9, 100)]
    img = DetImage.make(gt, gt + fps, scores)
    ours = coco_ap([img])
    assert ours["AP"] == pytest.approx(_pycocotools([img], tmp_path)[0], abs=1e-12)
    assert ours["AP"] == pytest.approx(41 / 101)
