"""A LoRA-trained checkpoint through the one loader: export (tools/export.py) and the graph runner give the
predictor's greedy tokens and logits, and the model folder (save_pretrained) answers the same. Before the loader,
export built a plain model and skipped the lora_a / lora_b tensors: the graphs were the base model."""
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train"))
from toy_data import make_toy_humanins, toy_overrides  # noqa: E402

from lman_ms.config import load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTRUCTIONS = ["What is the facial expression of this person?", "Find every face."]
MAX_NEW = 6
TOL = 1e-5


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """Two LoRA training steps (a real checkpoint: optimizer moments included), then lora_b redrawn large so that the
    LoRA update moves every logit far more than the tolerance (after two steps it is still tiny)."""
    root = str(tmp_path_factory.mktemp("lora_export"))
    out, tok = make_toy_humanins(root, n=4)
    over = toy_overrides(root, out, tok, steps=2, extra=["train.lora.rank=4", "train.lora.alpha=8",
                                                         "train.lora.target_modules=[wq,wv,w2]"])
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    from lman_ms.models.loader import latest_checkpoint
    from lman_ms.train.trainer import Trainer
    cfg = load_config(os.path.join(REPO, "configs/tiny_cpu.yaml"), over)
    Trainer(cfg).fit()
    ckpt_dir = latest_checkpoint(cfg.train.output_dir)
    path = os.path.join(ckpt_dir, "model.ckpt")
    params = ms.load_checkpoint(path)
    rng = np.random.default_rng(0)
    state = []
    for name, p in params.items():
        data = p
        if name.startswith("llm.") and name.endswith(".lora_b"):
            data = Tensor(rng.normal(0, 0.5, p.shape).astype(np.float32))
        state.append({"name": name, "data": data})
    assert any(s["name"].startswith("adam_m.") for s in state)       # optimizer state is part of what is loaded
    ms.save_checkpoint(state, path)
    export_dir = os.path.join(root, "export")
    # no --config: the loader reads the config.yaml beside the checkpoint (train.lora.rank 4)
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"), "--ckpt", cfg.train.output_dir,
                          "--output_dir", export_dir, "--batch-size", "2"],
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    images = [os.path.join(root, "images", f"img_00{i}.png") for i in range(2)]
    return dict(root=root, cfg=cfg, ckpt=ckpt_dir, export=export_dir, images=images)


def _reference(predictor, runner, images):
    pixels, ids, mask = runner.preprocess(images, INSTRUCTIONS)
    prefix = predictor.prefix_cell(Tensor(pixels), Tensor(ids), Tensor(mask), Tensor(predictor.prefix)).asnumpy()
    return predictor.generator.generate(input_ids=[runner.prompt_ids(t) for t in INSTRUCTIONS], prefix_embeds=prefix,
                                        max_new_tokens=MAX_NEW, eos_token_id=predictor.tok.eos_id,
                                        pad_token_id=predictor.tok.pad_id, output_scores=True)


def test_lora_checkpoint_export_matches_the_predictor(lora_run):
    from lman_ms.infer.lite import LiteRunner
    from lman_ms.infer.predictor import LManPredictor
    predictor = LManPredictor.from_pretrained(lora_run["ckpt"])
    assert predictor.cfg.train.lora.rank == 4
    assert not any(".lora_" in p.name for p in predictor.model.get_parameters())      # merged
    runner = LiteRunner(lora_run["export"], backend="graphcell")
    ref = _reference(predictor, runner, lora_run["images"])
    pixels, ids, mask = runner.preprocess(lora_run["images"], INSTRUCTIONS)
    out = runner.generate([runner.prompt_ids(t) for t in INSTRUCTIONS], runner.visual_prefix(pixels, ids, mask),
                          MAX_NEW, eos_token_id=predictor.tok.eos_id, pad_token_id=predictor.tok.pad_id,
                          output_scores=True)
    assert out.sequences == ref.sequences
    steps = min(len(out.scores), len(ref.scores))
    diff = max(float(np.abs(out.scores[i] - ref.scores[i]).max()) for i in range(steps))
    print("max abs diff of step logits, exported LoRA model vs predictor:", diff)
    assert diff <= TOL

    # the LoRA update is what is being compared: the base model (LoRA tensors skipped, as export did before the
    # loader) gives other logits
    from lman_ms.models.lman import LMan
    from lman_ms.models.loader import load_weights
    base = LMan(lora_run["cfg"], stage=2)
    load_weights(base, lora_run["ckpt"], strict=False)
    base_predictor = LManPredictor(lora_run["cfg"], model=base)
    base_ref = _reference(base_predictor, runner, lora_run["images"])
    gap = float(np.abs(base_ref.scores[0] - ref.scores[0]).max())
    print("max abs diff of first-step logits, base vs LoRA model:", gap)
    assert gap > 1000 * TOL


def test_lora_model_folder_answers_like_the_checkpoint(lora_run, tmp_path):
    """save_pretrained writes merged weights and a config without LoRA; from_pretrained of that folder, moved
    elsewhere, gives the checkpoint's answers."""
    import shutil
    from lman_ms.config import load_config as load
    from lman_ms.infer.predictor import LManPredictor
    predictor = LManPredictor.from_pretrained(lora_run["ckpt"])
    folder = predictor.save_pretrained(str(tmp_path / "model"))
    assert sorted(os.listdir(folder)) == ["clip_tokenizer", "config.yaml", "model.ckpt", "tokenizer"]
    saved = load(os.path.join(folder, "config.yaml"))
    assert saved.train.lora.rank == 0 and saved.data.tokenizer_path == "tokenizer"
    assert not any(".lora_" in k for k in ms.load_checkpoint(os.path.join(folder, "model.ckpt")))
    moved = str(tmp_path / "elsewhere" / "model")
    shutil.move(folder, moved)
    again = LManPredictor.from_pretrained(moved)
    kwargs = dict(max_new_tokens=MAX_NEW)
    assert again.answer(lora_run["images"], INSTRUCTIONS, **kwargs) == \
        predictor.answer(lora_run["images"], INSTRUCTIONS, **kwargs)
    one = again.answer(lora_run["images"][0], INSTRUCTIONS[1], **kwargs)
    assert isinstance(one, str) and set(one.structure) == {"task", "boxes", "keypoints", "labels"}


def test_loader_refuses_what_the_model_does_not_have(lora_run, tmp_path):
    from lman_ms.models.loader import load_model
    cfg = load_config(os.path.join(lora_run["ckpt"], "config.yaml"), ["train.lora.rank=0"])
    with pytest.raises(ValueError, match=r"tensor\(s\) are not parameters of this model \(LoRA tensors: the config "
                                         r"has train.lora.rank 0\): \['llm\..*lora_a'"):
        load_model(lora_run["ckpt"], cfg)
    with pytest.raises(FileNotFoundError, match="nowhere: no checkpoint there"):
        load_model(str(tmp_path / "nowhere"), lora_run["cfg"])
