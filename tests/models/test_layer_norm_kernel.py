"""The CPU LayerNorm kernels (forward and backward) equal torch's layer_norm and its autograd, through both norm
cells in training mode, in GRAPH_MODE and PYNATIVE_MODE; in inference mode and with LMAN_MS_NORM_KERNELS=0 the cells
run MindSpore's LayerNorm (nothing custom in an exported graph)."""
import numpy as np
import mindspore as ms
import pytest
import torch
from mindspore import Tensor, nn, ops

from lman_ms.models.layer_norm_kernel import MindcvLayerNorm, kernels_available
from lman_ms.models.layers import LayerNorm

EPS = 1e-5


class _Weighted(nn.Cell):
    """sum(norm(x) * w): a loss whose gradient into the norm is w, different at every position."""

    def __init__(self, norm, w):
        super().__init__()
        self.norm, self.w = norm, Tensor(w)

    def construct(self, x):
        return (self.norm(x) * self.w).sum()


def _params(norm):
    if isinstance(norm, LayerNorm):
        return norm.weight, norm.bias
    return norm.gamma, norm.beta


def _case(shape, seed=0):
    rng = np.random.default_rng(seed)
    d = shape[-1]
    x = (rng.normal(size=shape) * 3 + 1).astype(np.float32)
    w = rng.normal(size=shape).astype(np.float32)
    g = (1 + 0.3 * rng.normal(size=(d,))).astype(np.float32)
    b = (0.3 * rng.normal(size=(d,))).astype(np.float32)
    return x, w, g, b


def _torch(x, w, g, b):
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, g, b))
    y = torch.nn.functional.layer_norm(tx, (x.shape[-1],), tg, tb, EPS)
    (y * torch.tensor(w)).sum().backward()
    return y.detach().numpy(), tx.grad.numpy(), tg.grad.numpy(), tb.grad.numpy()


def _build(kind, d):
    return LayerNorm(d, EPS) if kind == "hf" else MindcvLayerNorm((d,), epsilon=EPS)


# (2, 5, 37): a width that is not a multiple of the kernel's 16 lanes; (3, 700, 64): enough values for several threads
@pytest.mark.parametrize("shape", [(2, 5, 37), (3, 700, 64)], ids=["tail", "threads"])
@pytest.mark.parametrize("kind", ["hf", "mindcv"])
@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
def test_training_norm_matches_torch(mode, kind, shape):
    ms.set_context(mode=mode, device_target="CPU")
    if kernels_available() is None:
        pytest.skip("the LayerNorm kernels cannot be built here (no C++ compiler?)")
    x, w, g, b = _case(shape)
    norm = _build(kind, shape[-1])
    assert norm.fused is not None
    gain, bias = _params(norm)
    gain.set_data(Tensor(g))
    bias.set_data(Tensor(b))
    net = _Weighted(norm, w)
    net.set_train(True)
    grad = ms.value_and_grad(net, 0, [gain, bias])

    def step(inp):
        return grad(inp), norm(inp)

    (loss, (dx, (dg, db))), y = (ms.jit(step) if mode == ms.GRAPH_MODE else step)(Tensor(x))
    ty, tdx, tdg, tdb = _torch(x, w, g, b)
    np.testing.assert_allclose(y.asnumpy(), ty, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(loss.asnumpy()), float((ty * w).sum()), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(dx.asnumpy(), tdx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dg.asnumpy(), tdg, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(db.asnumpy(), tdb, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kind", ["hf", "mindcv"])
def test_inference_mode_and_switch_use_mindspore_layer_norm(kind, monkeypatch):
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    x, _, g, b = _case((2, 4, 24), seed=1)
    ty = _torch(x, np.ones_like(x), g, b)[0]
    norm = _build(kind, 24)
    for p, v in zip(_params(norm), (g, b)):
        p.set_data(Tensor(v))
    norm.set_train(False)
    np.testing.assert_allclose(norm(Tensor(x)).asnumpy(), ty, rtol=1e-5, atol=1e-5)
    # an exported inference graph holds MindSpore's LayerNorm, not the custom op (MindSpore Lite runs it)
    monkeypatch.setenv("LMAN_MS_NORM_KERNELS", "0")
    off = _build(kind, 24)
    assert off.fused is None
    for p, v in zip(_params(off), (g, b)):
        p.set_data(Tensor(v))
    off.set_train(True)
    np.testing.assert_allclose(off(Tensor(x)).asnumpy(), ty, rtol=1e-5, atol=1e-5)


def test_vision_encoder_builds_its_norms_with_the_kernel_cell():
    """The ViT's norms are MindcvLayerNorm, so its parameters keep mindcv's names (gamma / beta)."""
    from lman_ms.config import VisionConfig
    from lman_ms.models.vision import CLIPVisionEncoder
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    vit = CLIPVisionEncoder(VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=16, patch_size=8))
    norms = [c for _, c in vit.cells_and_names() if isinstance(c, nn.LayerNorm)]
    assert norms and all(isinstance(c, MindcvLayerNorm) for c in norms)
    assert any(p.name.endswith("norm_pre.gamma") for p in vit.get_parameters())


@pytest.mark.parametrize("kind", ["hf", "mindcv"])
def test_the_backward_is_the_op_s_own_not_a_cell_bprop(kind):
    # MindSpore's C++ side holds cells with a custom bprop until interpreter exit, where Cell.__del__ fails: the
    # default demo printed 18 such tracebacks while the backward lived in a Cell (layer_norm_kernel.py)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    if kernels_available() is None:
        pytest.skip("the LayerNorm kernels cannot be built here (no C++ compiler?)")
    norm = _build(kind, 8)
    assert isinstance(norm.fused, ops.Custom)
    assert [name for name, cell in norm.cells_and_names() if hasattr(type(cell), "bprop")] == []
