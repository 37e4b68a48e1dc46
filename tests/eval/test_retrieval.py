"""Stage-1 retrieval: recall@K on hand-built similarity matrices, and the CLI on COCO-format captions converted by
the real converter, checked against the training path (contrastive_loss of eq. 3-5) and a model whose
embeddings are forced equal (known answer)."""
import json
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor
from PIL import Image

from lman_ms.config import load_config
from lman_ms.data.humanins.builder import build
from lman_ms.data.humanins.templates import SEEDS
from lman_ms.data.pipeline import load_image
from lman_ms.data.tokenizers import load_clip_tokenizer, train_sentencepiece
from lman_ms.eval.retrieval import (caption_inputs, chance_recall, evaluate_retrieval, load_caption_records,
                                    load_stage1_model, recall_at_k)
from lman_ms.models.lman import LMan
from lman_ms.models.losses import contrastive_loss

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20),
           "purple": (140, 30, 160), "white": (250, 250, 250)}


# ---- the metric on hand-built matrices ------------------------------------------------------------------------------
def test_recall_at_k_by_hand():
    owner = [0, 0, 1, 2, 2]                     # image 0 has captions 0-1, image 1 caption 2, image 2 captions 3-4
    sim = np.array([[0.9, 0.1, 0.5, 0.2, 0.3],
                    [0.4, 0.6, 0.7, 0.8, 0.1],
                    [0.3, 0.2, 0.3, 0.3, 0.35]])
    r = recall_at_k(sim, owner, ks=(1, 2, 3))
    # i2t ranks: image 0 -> 0; image 1 -> 1 (caption 3 scores 0.8 > 0.7); image 2 -> 0 (its best is 0.35)
    assert r["i2t_R@1"] == pytest.approx(2 / 3) and r["i2t_R@2"] == 1.0 and r["i2t_rank"] == pytest.approx(1 / 3)
    # t2i ranks: c0 0, c1 2 (0.6 and 0.2 beat 0.1), c2 0, c3 1 (0.8 beats 0.3), c4 0
    assert (r["t2i_R@1"], r["t2i_R@2"], r["t2i_R@3"]) == pytest.approx((0.6, 0.8, 1.0))
    assert r["t2i_rank"] == pytest.approx(0.6)


def test_ties_are_pessimistic_and_chance_is_exact():
    r = recall_at_k(np.ones((3, 3)), [0, 1, 2], ks=(1, 3))
    assert r["i2t_R@1"] == r["t2i_R@1"] == 0.0 and r["i2t_R@3"] == r["t2i_R@3"] == 1.0
    # float32 rounding of equal embeddings (a GEMM tile's last bit) is still a tie; a real margin is not
    eps = float(np.finfo(np.float32).eps)
    near = np.ones((3, 3), np.float32) + np.eye(3, dtype=np.float32) * eps
    r = recall_at_k(near, [0, 1, 2], ks=(1,))
    assert r["i2t_R@1"] == r["t2i_R@1"] == 0.0
    assert recall_at_k(np.ones((3, 3)) + np.eye(3) * 1e-4, [0, 1, 2], ks=(1,))["t2i_R@1"] == 1.0
    c = chance_recall([0, 0, 1, 2, 2], 3, ks=(1, 2))
    # an image with c captions misses one random pick among 5 with probability (5 - c) / 5
    assert c["i2t_R@1"] == pytest.approx(1 - (3 / 5 + 4 / 5 + 3 / 5) / 3)
    # two picks: C(5 - c, 2) / C(5, 2) -> 3/10, 6/10, 3/10
    assert c["i2t_R@2"] == pytest.approx(1 - (0.3 + 0.6 + 0.3) / 3)
    assert c["t2i_R@1"] == pytest.approx(1 / 3) and c["t2i_R@2"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least one caption"):
        recall_at_k(np.ones((2, 2)), [0, 0])
    with pytest.raises(ValueError, match="2 entries for 3 texts"):
        recall_at_k(np.ones((2, 3)), [0, 1])


# ---- end to end on COCO-format captions ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """coco/annotations/captions_val2017.json + coco/val2017/*.jpg, converted to HumanIns by the real converter."""
    root = tmp_path_factory.mktemp("retrieval")
    coco_dir = root / "coco"
    (coco_dir / "annotations").mkdir(parents=True)
    (coco_dir / "val2017").mkdir()
    images, anns = [], []
    for i, (name, rgb) in enumerate(COLOURS.items()):
        fname = f"{i + 1:012d}.jpg"
        arr = np.full((40, 56, 3), 90, np.uint8)
        arr[8:32, 10:40] = rgb
        Image.fromarray(arr).save(coco_dir / "val2017" / fname, quality=95)
        images.append({"id": i + 1, "file_name": fname, "width": 56, "height": 40})
        anns += [{"id": 10 * i + 1, "image_id": i + 1, "caption": f"A {name} box on grey. "},
                 {"id": 10 * i + 2, "image_id": i + 1, "caption": f"one  {name} square\n"}]
    (coco_dir / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": images,
                                                                                 "annotations": anns}))
    out = str(root / "humanins")
    build("coco_captions", str(coco_dir), "test", out, progress=False)
    texts = [a["caption"] for a in anns] + SEEDS["caption"]
    tok = str(root / "tokenizer")
    train_sentencepiece(texts * 4, tok, vocab_size=400)
    return str(root), out, tok


def _cfg(tok, *extra):
    vocab = load_clip_tokenizer(tok).vocab_size
    return load_config(os.path.join(REPO, "configs/tiny_cpu.yaml"),
                       ["train.stage=1", f"data.clip_tokenizer_path={tok}", f"text.vocab_size={vocab}",
                        "text.bos_token_id=1", "text.eos_token_id=2", "text.pad_token_id=0", *extra])


def test_cli_matches_training_similarity(coco, capsys):
    root, out, tok = coco
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(3)
    cfg = _cfg(tok)
    ckpt_dir = os.path.join(root, "run", "checkpoints", "step_00000007")
    os.makedirs(ckpt_dir)
    ms.save_checkpoint(LMan(cfg, stage=1), os.path.join(ckpt_dir, "model.ckpt"))
    with open(os.path.join(ckpt_dir, "state.json"), "w") as f:
        json.dump({"step": 7}, f)

    from tools.eval_retrieval import main
    code = main(["--config", os.path.join(REPO, "configs/tiny_cpu.yaml"), "--ckpt", os.path.join(root, "run"),
                 "--records", out, "--batch-size", "4", "--ks", "1", "5",
                 "--set", "train.stage=1", f"data.clip_tokenizer_path={tok}", f"text.vocab_size={cfg.text.vocab_size}",
                 "text.bos_token_id=1", "text.eos_token_id=2", "text.pad_token_id=0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| i2t_R@1 |" in printed and "retrieval_test.json" in printed
    result = json.load(open(os.path.join(ckpt_dir, "retrieval_test.json")))
    assert result["num_images"] == 6 and result["num_captions"] == 12 and result["split"] == "test"
    assert result["chance"]["t2i_R@1"] == pytest.approx(1 / 6)

    # the same numbers from the training path: LMan's own V_g / T_g and the L_lic similarity at scale 1
    ms.set_context(mode=ms.PYNATIVE_MODE)
    model = load_stage1_model(cfg, ckpt_dir)
    records = load_caption_records(out, "test")
    assert [r["target"]["captions"][1] for r in records][:2] == ["one red square", "one green square"]
    ins_ids, ins_mask, cap_ids, cap_mask, owner = caption_inputs(cfg, records, load_clip_tokenizer(tok))
    pixels = np.stack([load_image(r["image_path"], cfg.vision.image_size) for r in records])
    v_g = model.global_visual_embedding(model.visual_tokens(Tensor(pixels), Tensor(ins_ids), Tensor(ins_mask)))
    _, t_g = model.text_model(Tensor(cap_ids), Tensor(cap_mask))
    _, sim = contrastive_loss(v_g, t_g, Tensor(1.0, ms.float32))
    expected = recall_at_k(sim.asnumpy(), owner, ks=(1, 5))
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-9), key


def test_equal_embeddings_score_zero(coco):
    """V_g forced to one vector for every image (projection weight 0, bias fixed). Each caption then scores the
    same against all 6 images: with pessimistic ties its own image ranks behind the 5 others (t2i R@5 = 0,
    R@10 = 1). All rows are the same row, so only the owner of the single best caption ranks it first
    (i2t R@1 = 1/6), and no image ranks behind more than its 10 wrong captions (i2t R@11 = 1)."""
    root, out, tok = coco
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    cfg = _cfg(tok)
    model = LMan(cfg, stage=1)
    w = model.vision_proj.weight
    w.set_data(Tensor(np.zeros(w.shape, np.float32)))
    model.vision_proj.bias.set_data(Tensor(np.ones(model.vision_proj.bias.shape, np.float32)))
    records = load_caption_records(out, "test")
    result = evaluate_retrieval(model, cfg, records, load_clip_tokenizer(tok), batch_size=4, ks=(1, 5, 10, 11),
                                progress=False)
    assert result["i2t_R@1"] == pytest.approx(1 / 6) and result["t2i_R@1"] == 0.0 and result["t2i_R@5"] == 0.0
    assert result["t2i_R@10"] == 1.0 and result["i2t_R@11"] == 1.0 and result["t2i_rank"] == 5.0


def test_bad_checkpoints_are_named(coco, tmp_path):
    root, out, tok = coco
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    cfg = _cfg(tok)
    with pytest.raises(FileNotFoundError, match="nowhere: no checkpoint there"):
        load_stage1_model(cfg, str(tmp_path / "nowhere"))
    stage2 = _cfg(tok, "train.stage=2")
    ms.save_checkpoint(LMan(stage2, stage=2), str(tmp_path / "s2.ckpt"))
    with pytest.raises(ValueError, match=r"s2\.ckpt: \d+ tensor\(s\) are not parameters of this model \(a "
                                         r"checkpoint of another stage or config\?\): \['language_projection\."):
        load_stage1_model(cfg, str(tmp_path / "s2.ckpt"))
