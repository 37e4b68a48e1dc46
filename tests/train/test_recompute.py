"""parallel.recompute: the ViT blocks, adapter layers and LLM decoder layers are recomputed in backward, and the
gradients of every trainable parameter are those without recomputation (GRAPH_MODE, CPU)."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, nn

from lman_ms.config import load_config
from lman_ms.models.lman import LMan, Stage2LossCell
from lman_ms.models.lora import apply_lora_from_config
from lman_ms.train.recompute import apply_recompute, recompute_blocks

# LoRA with dropout on every projection: the one random op inside the recomputed blocks
OVERRIDES = ["train.stage=2", "train.lora.rank=4", "train.lora.dropout=0.3",
             "train.lora.target_modules=[wq, wk, wv, wo, w1, w2, w3]"]


class _Grads(nn.Cell):
    def __init__(self, loss_cell, weights):
        super().__init__(auto_prefix=False)
        self.grad_fn = ms.value_and_grad(loss_cell, None, weights)

    def construct(self, *inputs):
        return self.grad_fn(*inputs)


def _batch(cfg, step, batch=2, text=32):
    r = np.random.default_rng(step)
    return [Tensor(r.standard_normal((batch, 3, cfg.vision.image_size, cfg.vision.image_size)).astype(np.float32)),
            Tensor(r.integers(0, cfg.text.vocab_size, (batch, cfg.adapter.num_instruction_tokens)).astype(np.int32)),
            Tensor(np.ones((batch, cfg.adapter.num_instruction_tokens), np.float32)),
            Tensor(r.integers(3, cfg.llm.vocab_size, (1, 6)).astype(np.int32)),
            Tensor(r.integers(3, cfg.llm.vocab_size, (batch, text)).astype(np.int32)),
            Tensor(np.ones((batch, text), np.float32)),
            Tensor(r.integers(3, cfg.llm.vocab_size, (batch, text)).astype(np.int32))]


def _gradients(recompute: bool, steps: int = 2):
    """Per step: {parameter: gradient}, every parameter trainable, from the same seed (same weights and masks)."""
    ms.set_seed(0)
    cfg = load_config("configs/tiny_cpu.yaml", OVERRIDES + [f"parallel.recompute={str(recompute).lower()}"])
    model = LMan(cfg, stage=2)
    apply_lora_from_config(model, cfg)
    for p in model.get_parameters():
        p.requires_grad = True
    counts = apply_recompute(model, cfg)
    weights = model.trainable_params()
    grads = _Grads(Stage2LossCell(model), weights)
    grads.set_train(True)                                  # LoRA dropout acts
    out = []
    for step in range(steps):
        _, g = grads(*_batch(cfg, step))
        out.append({p.name: x.asnumpy() for p, x in zip(weights, g)})
    return model, counts, out


def test_recompute_marks_the_blocks_and_keeps_every_gradient():
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    _, off_counts, plain = _gradients(False)
    model, counts, recomputed = _gradients(True)
    assert off_counts == {}
    cfg = model.config
    assert counts == {"vision_model.blocks": cfg.vision.num_hidden_layers,
                      "adapter.layers": cfg.adapter.num_hidden_layers, "llm.layers": cfg.llm.num_hidden_layers}
    # MindSpore keeps the recompute setting on the cell (no public getter); every block, none of the others
    marked = {id(c) for cells in recompute_blocks(model).values() for c in cells}
    assert all(c._has_config_recompute for _, c in model.cells_and_names() if id(c) in marked)
    assert not model.language_projection._has_config_recompute and not model.adapter._has_config_recompute
    for step, (a, b) in enumerate(zip(plain, recomputed)):
        assert a.keys() == b.keys() and any(".lora_b" in k for k in a)
        for name in a:
            # float summation order only (2.3e-10 measured against gradients up to ~0.1)
            np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-8, err_msg=f"step {step}: {name}")


def test_recompute_with_lora_dropout_needs_a_seed(monkeypatch):
    cfg = load_config("configs/tiny_cpu.yaml", OVERRIDES + ["parallel.recompute=true"])
    monkeypatch.setattr(ms, "get_seed", lambda: None)
    with pytest.raises(RuntimeError, match="set_seed"):
        apply_recompute(object(), cfg)
