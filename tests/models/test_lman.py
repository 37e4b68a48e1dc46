"""A GRAPH_MODE training step of the tiny L-Man for each stage: finite loss, frozen parameters unchanged,
trained ones updated."""
import numpy as np
import mindspore as ms
import pytest

from lman_ms.config import load_config
from lman_ms.models.lman import LMan, Stage1LossCell, Stage2LossCell
from lman_ms.models.param_count import count_parameters
from lman_ms.train.freeze import apply_freezing, component_of
from lman_ms.train.optim import build_optimizer
from lman_ms.train.step import TrainStep


def _stage1_batch(cfg, b=4, seed=0):
    rng = np.random.default_rng(seed)
    s, t, ti = cfg.vision.image_size, cfg.text.max_position_embeddings, cfg.adapter.num_instruction_tokens
    caps = rng.integers(1, cfg.text.vocab_size - 2, (b, t)).astype(np.int32)
    caps[:, 10] = cfg.text.eos_token_id
    cap_mask = (np.arange(t)[None] <= 10).astype(np.float32).repeat(b, 0)
    labels = np.full((b, t), -100, np.int32)
    labels[:, 3] = caps[:, 3]
    masked = caps.copy()
    masked[:, 3] = cfg.text.vocab_size - 1
    return (rng.standard_normal((b, 3, s, s)).astype(np.float32),
            rng.integers(0, cfg.text.vocab_size, (b, ti)).astype(np.int32), np.ones((b, ti), np.float32),
            caps, cap_mask, masked, labels)


def _stage2_batch(cfg, b=2, seed=0, length=32):
    rng = np.random.default_rng(seed)
    s, ti = cfg.vision.image_size, cfg.adapter.num_instruction_tokens
    ids = rng.integers(3, cfg.llm.vocab_size, (b, length)).astype(np.int32)
    mask = np.ones((b, length), np.float32)
    mask[1, 20:] = 0
    labels = np.full((b, length), -100, np.int32)
    labels[:, 10:18] = ids[:, 10:18]
    return (rng.standard_normal((b, 3, s, s)).astype(np.float32),
            rng.integers(0, cfg.text.vocab_size, (b, ti)).astype(np.int32), np.ones((b, ti), np.float32),
            np.array([[1, 5, 6, 7]], np.int32), ids, mask, labels)


def _snapshot(cell):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def _run_step(stage, overrides=()):
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = load_config("configs/tiny_cpu.yaml", [f"train.stage={stage}", *overrides])
    model = LMan(cfg)
    counts = apply_freezing(model, cfg.train, cfg.llm.num_hidden_layers)
    loss_cell = Stage1LossCell(model) if stage == 1 else Stage2LossCell(model)
    opt, _ = build_optimizer(model.trainable_params(), cfg.train)
    step = TrainStep(loss_cell, opt, cfg.train.max_grad_norm, has_aux=stage == 1)
    batch = _stage1_batch(cfg) if stage == 1 else _stage2_batch(cfg)
    before = _snapshot(model)
    out = step(*[ms.Tensor(x) for x in batch])
    after = _snapshot(model)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    return cfg, model, counts, out, before, after


def _changed(before, after, name):
    return not np.array_equal(before[name], after[name])


def test_stage1_graph_step_trains_adapter_and_heads_only():
    cfg, model, counts, out, before, after = _run_step(1)
    loss, l_lic, l_vmlm = (float(x.asnumpy()) for x in out)
    assert np.isfinite([loss, l_lic, l_vmlm]).all() and l_lic > 0 and l_vmlm > 0
    assert abs(loss - (l_lic + cfg.loss.vmlm_weight * l_vmlm)) < 1e-4   # eq. (7)
    assert counts["vision_model"]["trainable"] == 0 and counts["text_model"]["trainable"] == 0
    for name in before:
        comp = component_of(name)
        if comp in ("vision_model", "text_model"):
            assert not _changed(before, after, name), name
    for name in ("adapter.query_tokens", "adapter.layers.1.crossattention.q_proj.weight", "vision_proj.weight",
                 "vmlm_head.decoder.weight", "logit_scale.log_scale"):
        assert _changed(before, after, name), name


def test_stage2_graph_step_trains_vision_adapter_projection_and_last_llm_layer():
    cfg, model, counts, out, before, after = _run_step(2)
    assert np.isfinite(float(out.asnumpy()))
    assert counts["vision_model"]["trainable"] == counts["vision_model"]["total"]
    llm = [n for n in before if component_of(n) == "llm"]
    last = cfg.llm.num_hidden_layers - 1
    for name in llm:
        should = f".layers.{last}." in name or "norm_out" in name
        assert _changed(before, after, name) == should, name
    for name in ("adapter.query_tokens", "language_projection.weight", "vision_model.cls_token"):
        assert _changed(before, after, name), name


def test_param_count_formulas_match_the_real_cells():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    for stage in (1, 2):
        cfg = load_config("configs/tiny_cpu.yaml", [f"train.stage={stage}"])
        model = LMan(cfg)
        real = {}
        for name, p in model.parameters_and_names():
            real[component_of(name)] = real.get(component_of(name), 0) + int(p.size)
        assert real == dict(count_parameters(cfg, stage))


def test_7b_sizes_within_one_percent_of_known():
    counts = count_parameters(load_config("configs/lman_7b.yaml"))
    assert abs(counts["vision_model"] / 303.18e6 - 1) < 0.01    # CLIP ViT-L/14 vision tower
    assert abs(counts["llm"] / 6.738e9 - 1) < 0.01              # Vicuna-7B / LLaMA-7B


def test_stage1_freeze_text_false_trains_the_text_tower():
    _, _, counts, _, before, after = _run_step(1, ["train.freeze_text=false"])
    assert counts["text_model"]["trainable"] == counts["text_model"]["total"]
    assert _changed(before, after, "text_model.embeddings.token_embedding.weight")


def test_language_projection_starts_at_the_adapter_initializer_range():
    # HF InstructBLIP's init: N(0, initializer_range), zero bias; the visual tokens then start near the scale of
    # the LLM's token embeddings instead of ~80x above it (README, Decisions)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = load_config("configs/tiny_cpu.yaml", ["train.stage=2", "adapter.initializer_range=0.02"])
    proj = LMan(cfg).language_projection
    w = proj.weight.asnumpy()
    assert abs(w.std() - 0.02) < 0.003 and abs(w.mean()) < 0.003
    assert not proj.bias.asnumpy().any()



@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE])
def test_stage2_loss_skips_the_lm_head_on_visual_positions_with_the_same_loss_and_gradients(mode):
    """Eq. (8) computed from the last visual position on equals the loss over the logits of every position."""
    from lman_ms.data.masking import IGNORE_INDEX
    from lman_ms.models.losses import causal_lm_loss

    ms.set_context(mode=mode)
    try:
        cfg = load_config("configs/tiny_cpu.yaml", ["train.stage=2"])
        model = LMan(cfg)
        batch = [ms.Tensor(x) for x in _stage2_batch(cfg)]
        batch[-1][:, 0] = batch[-2][:, 0]     # a label on text token 0: predicted by the last visual position

        class Full(ms.nn.Cell):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def construct(self, *b):
                logits = self.m.stage2_logits(*b[:-1])
                pad = ms.ops.fill(b[-1].dtype, (b[-1].shape[0], logits.shape[1] - b[-1].shape[1]), IGNORE_INDEX)
                return causal_lm_loss(logits, ms.ops.concat((pad, b[-1]), axis=1))

        sliced, full = Stage2LossCell(model), Full(model)
        params = model.trainable_params()
        fn_s = ms.value_and_grad(sliced, None, params)
        fn_f = ms.value_and_grad(full, None, params)
        (ls, gs), (lf, gf) = fn_s(*batch), fn_f(*batch)
        np.testing.assert_allclose(ls.asnumpy(), lf.asnumpy(), rtol=1e-5, atol=1e-6)
        for p, a, b in zip(params, gs, gf):
            np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-4, atol=1e-6, err_msg=p.name)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
