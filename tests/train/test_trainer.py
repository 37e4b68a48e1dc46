"""Training loop: both stages run and checkpoint; resume equals an uninterrupted run; a crash while writing a
checkpoint leaves the previous one intact and resumable."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import mindspore as ms
import pytest

from lman_ms.config import load_config
from lman_ms.train.checkpoint import list_checkpoints, latest_checkpoint
from lman_ms.train.trainer import Trainer

from toy_data import make_toy_humanins, toy_overrides

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("toy"))
    out, tok = make_toy_humanins(root)
    return root, out, tok


def _params(ckpt_dir):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(os.path.join(ckpt_dir, "model.ckpt")).items()}


def _cfg(root, out, tok, run, **kw):
    over = toy_overrides(root, out, tok, **kw) + [f"train.output_dir={os.path.join(root, run)}"]
    return load_config(os.path.join(REPO, "configs/tiny_cpu.yaml"), over)


def test_stage2_trains_logs_and_keeps_last_checkpoints(toy):
    root, out, tok = toy
    cfg = _cfg(root, out, tok, "s2", steps=6, extra=["train.keep_last=2"])
    trainer = Trainer(cfg)
    # training mode reaches every cell: the norms train on the CPU LayerNorm kernels, LoRA's dropout acts
    assert all(c.training for _, c in trainer.model.cells_and_names())
    from lman_ms.models.layer_norm_kernel import kernels_available
    if kernels_available() is not None:
        norms = [c for _, c in trainer.model.cells_and_names() if hasattr(c, "fused")]
        assert norms and all(c.fused is not None for c in norms)
    result = trainer.fit()
    assert result["step"] == 6 and np.isfinite(result["loss"])
    ckpts = list_checkpoints(cfg.train.output_dir)
    assert [os.path.basename(c) for c in ckpts] == ["step_00000004", "step_00000006"]
    assert "train:" in open(os.path.join(ckpts[-1], "config.yaml")).read()
    lines = [json.loads(l) for l in open(os.path.join(cfg.train.output_dir, "metrics.jsonl"))]
    assert [l["step"] for l in lines] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "lr", "samples_per_s", "tokens_per_s", "eta_s", "task"):
        assert key in lines[0]


def test_stage1_trains_with_both_losses(toy):
    root, out, tok = toy
    cfg = _cfg(root, out, tok, "s1", stage=1, steps=2)
    result = Trainer(cfg).fit()
    assert result["lic"] > 0 and result["vmlm"] > 0


def test_resume_equals_uninterrupted(toy):
    root, out, tok = toy
    full = _cfg(root, out, tok, "full", steps=4, extra=["train.save_steps=100"])
    Trainer(full).fit()
    half = _cfg(root, out, tok, "half", steps=2, extra=["train.save_steps=100"])
    Trainer(half).fit()
    resumed = _cfg(root, out, tok, "half", steps=4, extra=["train.save_steps=100"])
    Trainer(resumed, resume=resumed.train.output_dir).fit()
    a = _params(latest_checkpoint(full.train.output_dir))
    b = _params(latest_checkpoint(resumed.train.output_dir))
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)


KILL_SCRIPT = r"""
import os, sys, time
sys.path.insert(0, {repo!r})
import lman_ms.train.checkpoint as ck
real = ck.ms.save_checkpoint
calls = []
def slow_save(cell, path, *a, **k):
    calls.append(path)
    real(cell, path, *a, **k)
    if len(calls) == 2:                      # the second checkpoint: signal, then hang mid-write
        open({flag!r}, "w").close()
        time.sleep(600)
ck.ms.save_checkpoint = slow_save
from lman_ms.config import load_config
from lman_ms.train.trainer import Trainer
Trainer(load_config({config!r}, {over!r})).fit()
"""


def test_sigkill_during_checkpoint_write_keeps_previous(toy, tmp_path):
    root, out, tok = toy
    run = os.path.join(root, "killed")
    over = toy_overrides(root, out, tok, steps=6) + [f"train.output_dir={run}"]
    flag = str(tmp_path / "in_save")
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT.format(repo=REPO, flag=flag, config=os.path.join(REPO, "configs/tiny_cpu.yaml"),
                                         over=over))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path))
    deadline = time.time() + 600
    while not os.path.exists(flag) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert os.path.exists(flag), "the run never reached its second checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpts = list_checkpoints(run)
    assert [os.path.basename(c) for c in ckpts] == ["step_00000002"]       # step 4 was never completed
    assert os.path.isdir(os.path.join(run, "checkpoints", ".step_00000004.tmp"))
    cfg = load_config(os.path.join(REPO, "configs/tiny_cpu.yaml"), over)
    result = Trainer(cfg, resume=run).fit()
    assert result["step"] == 6
    assert [os.path.basename(c) for c in list_checkpoints(run)][-1] == "step_00000006"
    assert not os.path.exists(os.path.join(run, "checkpoints", ".step_00000004.tmp"))


def test_stage2_lora_trains_adapters_only_and_predictor_merges(toy):
    """train.lora.rank > 0: the LLM's base weights stay put, lora_a/lora_b move; the predictor loads the LoRA
    checkpoint and folds it into W (its logits equal the wrapped model's)."""
    from lman_ms.infer.predictor import LManPredictor
    root, out, tok = toy
    cfg = _cfg(root, out, tok, "lora", steps=2, extra=["train.lora.rank=4", "train.lora.target_modules=[wq,wv,w2]",
                                                       "train.trainable_llm_layers=0"])
    trainer = Trainer(cfg)
    before = {p.name: p.asnumpy().copy() for p in trainer.model.get_parameters()}
    trainer.fit()
    after = _params(latest_checkpoint(cfg.train.output_dir))
    lora_b = [k for k in after if k.startswith("llm.") and k.endswith(".lora_b")]   # not the Adam moments
    assert len(lora_b) == 3 * cfg.llm.num_hidden_layers
    assert any(np.abs(after[k]).max() > 0 for k in lora_b)              # B starts at zero and was trained
    base = [k for k in after if k.startswith("llm.") and ".lora_" not in k]
    for k in base:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)     # frozen LLM weights
    predictor = LManPredictor(cfg, latest_checkpoint(cfg.train.output_dir))
    names = {p.name for p in predictor.model.get_parameters()}
    assert not any(".lora_" in n for n in names)
    img = os.path.join(root, "images", "img_000.png")
    answer = predictor.answer([img], ["What is the facial expression of this person?"], max_new_tokens=4)
    assert isinstance(answer[0], str)
    # more new tokens than the context has room for after the prompt: capped, not an error
    assert isinstance(predictor.answer([img], ["What is the facial expression?"], max_new_tokens=10_000)[0], str)
