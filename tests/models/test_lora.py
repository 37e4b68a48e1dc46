"""LoRA on the mindformers LLM: exact identity at init (B = 0), a GRAPH_MODE stage-2 step that trains LoRA and the
stage-2 parts but leaves the frozen LLM weights untouched, and a merge that reproduces the unmerged logits."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from lman_ms.config import ConfigError, load_config
from lman_ms.models.lman import LMan, Stage2LossCell
from lman_ms.train.freeze import apply_freezing
from lman_ms.models.lora import LoRALinear, apply_lora, lora_cells, lora_parameter_count, merge_lora
from lman_ms.train.optim import build_optimizer
from lman_ms.train.step import TrainStep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS = ["wq", "wv", "w1"]          # w1 carries the SiLU: the LoRA term must go in before the activation


class Logits(nn.Cell):
    def __init__(self, model):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, *batch):
        return self.model.stage2_logits(*batch)


def _cfg(*extra):
    return load_config(os.path.join(REPO, "configs/tiny_cpu.yaml"),
                       ["train.lora.rank=4", "train.lora.alpha=8", f"train.lora.target_modules={TARGETS}",
                        "train.trainable_llm_layers=0", "train.warmup_steps=0", *extra])


def _batch(cfg, seed=0, batch=2, text=16):
    rng = np.random.default_rng(seed)
    size, n_ins = cfg.vision.image_size, cfg.adapter.num_instruction_tokens
    ins_mask = np.ones((batch, n_ins), np.float32)
    ins_mask[:, n_ins - 3:] = 0
    mask = np.ones((batch, text), np.float32)
    mask[1, text - 4:] = 0
    labels = rng.integers(3, cfg.llm.vocab_size, (batch, text)).astype(np.int32)
    labels[:, :6] = -100
    labels[mask == 0] = -100
    return [Tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32)),
            Tensor(rng.integers(3, cfg.text.vocab_size, (batch, n_ins)).astype(np.int32)), Tensor(ins_mask),
            Tensor(rng.integers(3, cfg.llm.vocab_size, (1, 5)).astype(np.int32)),
            Tensor(rng.integers(3, cfg.llm.vocab_size, (batch, text)).astype(np.int32)), Tensor(mask),
            Tensor(labels)]


def _params(model):
    return {p.name: p.asnumpy().copy() for p in model.get_parameters()}


def test_lora_is_exact_at_init_and_merge_matches(tmp_path):
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    ms.set_seed(0)
    cfg = _cfg()
    model = LMan(cfg, stage=2)
    batch = _batch(cfg)[:6]
    base = Logits(model)(*batch).asnumpy()
    before = {p.name for p in model.get_parameters()}

    paths = apply_lora(model, cfg.train.lora)
    assert len(paths) == len(TARGETS) * cfg.llm.num_hidden_layers
    assert "llm.llama.model.layers.1.feed_forward.w1" in paths
    names = {p.name for p in model.get_parameters()}
    # base weights keep their names; every wrapped projection adds exactly .lora_a and .lora_b
    assert before <= names
    assert names - before == {f"{p}.lora_{x}" for p in paths for x in "ab"}
    assert {n for n, _ in model.parameters_and_names()} == names        # names agree with the cell paths
    added = sum(int(p.size) for p in model.get_parameters() if ".lora_" in p.name)
    assert added == lora_parameter_count(cfg.llm, cfg.train.lora)       # the config-only count is right
    cell = dict(lora_cells(model))["llm.llama.model.layers.0.attention.wq"]
    assert cell.lora_a.shape == (4, cfg.llm.hidden_size) and cell.lora_b.shape == (cfg.llm.hidden_size, 4)
    assert cell.scaling == 2.0 and not cell.lora_b.asnumpy().any() and cell.lora_a.asnumpy().std() > 0.1

    init = Logits(model)(*batch).asnumpy()
    np.testing.assert_array_equal(init, base)                             # B = 0: exactly the base model

    rng = np.random.default_rng(1)
    for _, c in lora_cells(model):
        c.lora_b.set_data(Tensor(rng.normal(0, 0.05, c.lora_b.shape).astype(np.float32)))
    unmerged = Logits(model)(*batch).asnumpy()
    assert np.abs(unmerged - base).max() > 1e-3                          # the update is not a no-op
    w, a, b = cell.weight.asnumpy().copy(), cell.lora_a.asnumpy(), cell.lora_b.asnumpy()

    assert merge_lora(model) == len(paths)
    assert not lora_cells(model)
    assert {p.name for p in model.get_parameters()} == before             # a plain model again
    merged = Logits(model)(*batch).asnumpy()
    np.testing.assert_allclose(merged, unmerged, atol=1e-5)
    merged_w = dict(model.parameters_and_names())["llm.llama.model.layers.0.attention.wq.weight"].asnumpy()
    np.testing.assert_allclose(merged_w, w + 2.0 * b @ a, rtol=0, atol=1e-6)   # W + (alpha / r) B A
    assert merge_lora(model) == 0


def test_graph_mode_stage2_step_trains_lora_not_frozen_llm():
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(0)
    cfg = _cfg("train.learning_rate=1.0e-2")
    model = LMan(cfg, stage=2)
    apply_lora(model, cfg.train.lora)
    counts = apply_freezing(model, cfg.train, cfg.llm.num_hidden_layers)
    lora_sizes = sum(int(p.size) for p in model.get_parameters() if ".lora_" in p.name)
    assert counts["llm"]["trainable"] == lora_sizes > 0
    optimizer, _ = build_optimizer(model.trainable_params(), cfg.train)
    step = TrainStep(Stage2LossCell(model), optimizer, cfg.train.max_grad_norm)
    before = _params(model)
    loss = float(step(*_batch(cfg)).asnumpy())
    assert np.isfinite(loss) and loss > 0
    after = _params(model)

    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    frozen_llm = [k for k in before if k.startswith("llm.") and ".lora_" not in k]
    assert frozen_llm and not changed & set(frozen_llm)                   # base LLM weights bit-identical
    assert {k for k in before if k.endswith(".lora_b")} <= changed        # B got a gradient (A's is 0 while B = 0)
    for part in ("vision_model.", "adapter.", "language_projection."):   # the other stage-2 trainables moved
        assert any(k.startswith(part) for k in changed), part


def test_bad_lora_settings_name_the_key():
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    cfg = _cfg("train.lora.target_modules=[wq, q_proj]")
    model = LMan(cfg, stage=2)
    with pytest.raises(ValueError, match=r"target_modules: \['q_proj'\] match no projection"):
        apply_lora(model, cfg.train.lora)
    assert not lora_cells(model)                                          # nothing half-applied
    with pytest.raises(ValueError, match="train.lora.rank must be > 0"):
        apply_lora(model, _cfg("train.lora.rank=0").train.lora)
    apply_lora(model, _cfg().train.lora)
    with pytest.raises(ValueError, match="already applied"):
        apply_lora(model, _cfg().train.lora)
    with pytest.raises(ConfigError, match="train.lora.rnak"):
        _cfg("train.lora.rnak=3")
    assert isinstance(dict(lora_cells(model))["llm.llama.model.layers.0.attention.wv"], LoRALinear)
