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
