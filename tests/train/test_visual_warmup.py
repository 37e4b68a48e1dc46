"""The demo's visual warm-up (stand-in for CLIP's pretraining): it learns the labels of the training pictures,
scores the held-out split, and writes ViT + adapter weights that stage 1 loads by name."""
import json
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from lman_ms.config import load_config
from toy_data import make_toy_humanins

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("warm"))
    out, tok = make_toy_humanins(root, n=24)
    # a held-out split: the same coloured squares under new ids (the warm-up scores it before and after)
    rows = [json.loads(x) for x in open(os.path.join(out, "toy_expr", "train-00000.jsonl"))]
    with open(os.path.join(out, "toy_expr", "test-00000.jsonl"), "w") as f:
        for r in rows[:12]:
            f.write(json.dumps(dict(r, split="test", id=r["id"].replace("/train/", "/test/"))) + "\n")
    meta = json.load(open(os.path.join(out, "toy_expr", "train.meta.json")))
    json.dump(meta, open(os.path.join(out, "toy_expr", "test.meta.json"), "w"))
    return root, out, tok


def _cfg(tok):
    return load_config(os.path.join(REPO, "configs", "tiny_cpu.yaml"), [f"data.tokenizer_path={tok}"])


def test_warmup_learns_the_labels_and_stage1_loads_its_weights(toy, tmp_path):
    from lman_ms.models.lman import LMan
    from lman_ms.train.pretrained import load_matching
    from lman_ms.train.visual_warmup import load_labelled, warmup_visual
    root, out, tok = toy
    ms.set_context(mode=ms.GRAPH_MODE)
    sets = load_labelled(out, "train", 64)
    assert list(sets) == ["toy_expr"] and sets["toy_expr"].images.shape == (24, 3, 64, 64)
    ckpt = str(tmp_path / "warm.ckpt")
    result = warmup_visual(_cfg(tok), out, ckpt, steps=60, learning_rate=2e-3, batch_size=8)
    assert result["after"]["toy_expr"] == 1.0 > result["before"]["toy_expr"]     # three colours, learned
    saved = ms.load_checkpoint(ckpt)
    assert saved and all(k.startswith(("vision_model.", "adapter.")) for k in saved)   # heads are not kept
    assert not os.path.exists(ckpt[:-5] + ".partial.ckpt")
    cfg = _cfg(tok)
    cfg.train.stage = 1
    model = LMan(cfg, stage=1)
    assert load_matching(model, ckpt) == len(saved)
    own = {p.name: p.asnumpy() for p in model.get_parameters()}
    for k, v in saved.items():
        np.testing.assert_array_equal(own[k], v.asnumpy())


def test_warmup_cli_refuses_a_non_ckpt_path_and_missing_records(toy, tmp_path):
    root, out, tok = toy
    cli = [sys.executable, os.path.join(REPO, "tools", "warmup_visual.py"), "--config",
           os.path.join(REPO, "configs", "tiny_cpu.yaml")]
    bad = subprocess.run(cli + ["--records", out, "--out", str(tmp_path / "w.bin"), "--steps", "1"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "must be a .ckpt file" in bad.stderr
    missing = subprocess.run(cli + ["--records", str(tmp_path / "nope"), "--out", str(tmp_path / "w.ckpt")],
                             capture_output=True, text=True, timeout=600)
    assert missing.returncode == 2 and "nope" in missing.stderr
    unknown = subprocess.run(cli + ["--records", out, "--out", str(tmp_path / "w.ckpt"), "--sources", "coco_person"],
                             capture_output=True, text=True, timeout=600)
    assert unknown.returncode == 2 and "['coco_person']" in unknown.stderr and "toy_expr" in unknown.stderr


def test_source_schedule_shares_steps_by_the_head_size():
    from types import SimpleNamespace
    from lman_ms.train.visual_warmup import source_schedule
    sources = [SimpleNamespace(names=list(range(n)), kind="single") for n in (26, 7, 9)]
    order = source_schedule(sources, 600)
    counts = np.bincount(order, minlength=3)
    expected = 600 * np.array([26, 7, 9]) / 42
    assert np.all(np.abs(counts - expected) <= 1), counts
    # interleaved: every source comes back within twice its mean interval, from the start to the end
    for k in range(3):
        steps = np.flatnonzero(np.asarray(order) == k)
        gap = 600 / counts[k] + 1       # within one mean interval of either end
        assert steps[0] < gap and steps[-1] > 600 - 1 - gap
        assert np.diff(steps).max() <= 2 * 600 / counts[k], (k, np.diff(steps).max())
    assert source_schedule(sources[:1], 5) == [0] * 5


def test_warmup_trains_each_source_the_steps_its_schedule_gives_it(toy, tmp_path):
    """A second source with four times the head outputs (12 attributes vs 3 labels) gets four times the steps."""
    import shutil
    from lman_ms.train.visual_warmup import load_labelled, source_schedule, warmup_visual
    _, out, tok = toy
    two = str(tmp_path / "humanins")
    shutil.copytree(os.path.join(out, "toy_expr"), os.path.join(two, "toy_expr"))
    os.makedirs(os.path.join(two, "toy_attr"))
    for split in ("train", "test"):
        rows = [json.loads(x) for x in open(os.path.join(out, "toy_expr", f"{split}-00000.jsonl"))]
        with open(os.path.join(two, "toy_attr", f"{split}-00000.jsonl"), "w") as f:
            for r in rows:
                onehot = [float(k == r["target"]["label"]) for k in range(12)]
                f.write(json.dumps(dict(r, dataset="toy_attr", id=r["id"].replace("toy_expr", "toy_attr"),
                                        task="pedestrian_attribute",
                                        target={"attributes": onehot, "attribute_names": [f"a{k}" for k in range(12)]}))
                        + "\n")
        meta = json.load(open(os.path.join(out, "toy_expr", f"{split}.meta.json")))
        json.dump(dict(meta, dataset="toy_attr"), open(os.path.join(two, "toy_attr", f"{split}.meta.json"), "w"))
    ms.set_context(mode=ms.GRAPH_MODE)
    sources = load_labelled(two, "train", 64)
    assert list(sources) == ["toy_attr", "toy_expr"] and sources["toy_attr"].multi_label
    result = warmup_visual(_cfg(tok), two, str(tmp_path / "w.ckpt"), steps=10, batch_size=4)
    order = source_schedule(list(sources.values()), 10)
    assert result["steps_per_source"] == {"toy_attr": order.count(0), "toy_expr": order.count(1)} == {
        "toy_attr": 8, "toy_expr": 2}
    assert set(result["after"]) == {"toy_attr", "toy_expr"}


def test_single_label_heads_read_the_mean_and_the_attribute_head_every_query(toy):
    from lman_ms.train.visual_warmup import LabelledSet, VisualClassifier, VisualPath
    _, _, tok = toy
    cfg = _cfg(tok)
    a = cfg.adapter
    img = np.zeros((2, 3, cfg.vision.image_size, cfg.vision.image_size), np.float32)
    sources = {"expr": LabelledSet("expr", "expression_recognition", img, np.zeros(2, np.int32), list("abc")),
               "attr": LabelledSet("attr", "pedestrian_attribute", img, np.zeros((2, 5), np.float32), list("vwxyz"))}
    net = VisualClassifier(VisualPath(cfg), sources)
    assert [h.in_channels for h in net.heads] == [a.hidden_size, a.hidden_size * a.num_query_tokens]
    x = ms.Tensor(np.random.default_rng(0).standard_normal(img.shape).astype(np.float32))
    tokens = net.tokens(x).asnumpy()
    w0, b0 = net.heads[0].weight.asnumpy(), net.heads[0].bias.asnumpy()
    np.testing.assert_allclose(net(x, 0).asnumpy(), tokens.mean(1) @ w0.T + b0, rtol=1e-4, atol=1e-5)
    w1, b1 = net.heads[1].weight.asnumpy(), net.heads[1].bias.asnumpy()
    np.testing.assert_allclose(net(x, 1).asnumpy(), tokens.reshape(2, -1) @ w1.T + b1, rtol=1e-4, atol=1e-5)


def test_location_targets_cover_the_boxes_and_centre_each_joint_on_its_cell():
    from lman_ms.train.visual_warmup import GRID, _coverage, _joint_maps
    # a box over the left half and the top quarter of a 160 x 80 picture: those cells covered, the others not
    cov = _coverage([[0, 0, 80, 20]], 160, 80).reshape(GRID, GRID)
    assert np.all(cov[: GRID // 4, : GRID // 2] == 1) and cov.sum() == (GRID // 4) * (GRID // 2)
    # a box ending inside a cell covers it in part (the fine raster has 4 x 4 points per cell)
    half = _coverage([[0, 0, 5, 80]], 160, 80).reshape(GRID, GRID)     # 5 px of a 10 px cell column
    np.testing.assert_allclose(half[:, 0], 0.5)
    assert half[:, 1:].sum() == 0
    # two joints, the second unlabelled: the first a distribution peaked on its cell, the second all zeros
    people = [[[145, 12.5, 2], [0, 0, 0]]]                       # the centre of cell (row 2, column 14)
    maps = _joint_maps(people, 160, 80).reshape(2, GRID, GRID)
    assert np.isclose(maps[0].sum(), 1.0) and maps[1].sum() == 0
    assert np.unravel_index(maps[0].argmax(), maps[0].shape) == (2, 14)


def test_location_warmup_learns_where_the_box_is_through_the_query_outputs(tmp_path):
    """Toy pictures with one bright square left or right: the where-head (on the query outputs side by side)
    learns which cells it covers, and the heads of location sources read every query."""
    from PIL import Image
    from lman_ms.train.visual_warmup import (GRID, LabelledSet, VisualClassifier, VisualPath, load_location,
                                             warmup_visual)
    root = tmp_path / "humanins"
    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("test", 8)):
        os.makedirs(root / "toy_person", exist_ok=True)
        os.makedirs(tmp_path / "img", exist_ok=True)
        with open(root / "toy_person" / f"{split}-00000.jsonl", "w") as f:
            for i in range(n):
                left = bool(i % 2)
                a = np.zeros((64, 96, 3), np.uint8)
                x1 = 4 if left else 52
                a[16:56, x1:x1 + 40] = (255, 200, 40)
                path = str(tmp_path / "img" / f"{split}{i}.png")
                Image.fromarray(a).save(path)
                f.write(json.dumps({"id": f"toy_person/{split}/{i}/0", "task": "pedestrian_detection",
                                    "dataset": "toy_person", "split": split, "image": path, "width": 96,
                                    "height": 64, "instruction": "Find the person.", "answer": "-",
                                    "target": {"boxes": [[x1, 16, x1 + 40, 56]], "ignore_boxes": []}}) + "\n")
        json.dump({"dataset": "toy_person", "split": split, "image_root": "/"},
                  open(root / "toy_person" / f"{split}.meta.json", "w"))
    # a labelled source too (the warm-up needs one); reuse the toy expression records
    out, tok = make_toy_humanins(str(tmp_path / "cls"), n=8)
    import shutil
    shutil.copytree(os.path.join(out, "toy_expr"), root / "toy_expr")
    sets = load_location(str(root), "train", 64)
    assert list(sets) == ["toy_person"] and sets["toy_person"].y.shape == (32, GRID * GRID)
    assert sets["toy_person"].kind == "occupancy" and sets["toy_person"].flat
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = _cfg(tok)
    cfg.vision.position_embedding_init = "sincos"          # the demo's visual path at tiny_cpu's sizes
    cfg.adapter.query_init_std, cfg.adapter.cross_attention_init_gain = 1.0, 3.0
    result = warmup_visual(cfg, str(root), str(tmp_path / "w.ckpt"), steps=160, learning_rate=3e-3,
                           batch_size=8, location=True)
    assert set(result["steps_per_source"]) == {"toy_expr", "toy_person"}
    # IoU of the covered cells on the held-out pictures: from a random head's guess to the squares
    assert result["after"]["toy_person"] > 0.7 > 0.3 > result["before"]["toy_person"], result
    cfg = _cfg(tok)
    net = VisualClassifier(VisualPath(cfg), {"p": sets["toy_person"]})
    assert net.heads[0].in_channels == cfg.adapter.hidden_size * cfg.adapter.num_query_tokens
