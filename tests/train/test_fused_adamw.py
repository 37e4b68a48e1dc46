"""The fused optimizer step equals torch.nn.utils.clip_grad_norm_ + torch.optim.AdamW through ``TrainStep``, in both
modes and both implementations (the custom clip + AdamW kernel, and its fallback: clipping then MindSpore's
AdamWeightDecay with torch's bias correction folded into its inputs): weight-decay groups, two learning-rate
scales, the warmup + cosine schedule and clipping active."""
import numpy as np
import mindspore as ms
import pytest
import torch
from mindspore import Tensor, nn

from lman_ms.config import TrainConfig
from lman_ms.train.optim import build_optimizer
from lman_ms.train.step import TrainStep

STEPS = 4
MAX_NORM = 0.5


class _Tiny(nn.Cell):
    """Two components (``adapter``, ``llm``), each a weight (decayed) and a bias / norm gain (not decayed)."""

    def __init__(self, init):
        super().__init__(auto_prefix=False)
        self.adapter_w = ms.Parameter(Tensor(init["adapter.dense.weight"]), name="adapter.dense.weight")
        self.adapter_b = ms.Parameter(Tensor(init["adapter.dense.bias"]), name="adapter.dense.bias")
        self.llm_w = ms.Parameter(Tensor(init["llm.wq.weight"]), name="llm.wq.weight")
        self.llm_g = ms.Parameter(Tensor(init["llm.norm.weight"]), name="llm.norm.weight")

    def construct(self, x, y):
        h = ms.ops.tanh(ms.ops.matmul(x, self.adapter_w.T) + self.adapter_b)
        out = ms.ops.matmul(h * self.llm_g, self.llm_w.T)
        return ((out - y) ** 2).mean()


def _torch_loss(p, x, y):
    h = torch.tanh(x @ p["adapter.dense.weight"].T + p["adapter.dense.bias"])
    return (((h * p["llm.norm.weight"]) @ p["llm.wq.weight"].T - y) ** 2).mean()


def _data():
    rng = np.random.default_rng(0)
    init = {"adapter.dense.weight": rng.normal(size=(6, 5)), "adapter.dense.bias": rng.normal(size=(6,)),
            "llm.wq.weight": rng.normal(size=(3, 6)), "llm.norm.weight": 1 + 0.1 * rng.normal(size=(6,))}
    batches = [(rng.normal(size=(8, 5)), rng.normal(size=(8, 3))) for _ in range(STEPS)]
    as32 = lambda a: a.astype(np.float32)  # noqa: E731
    return {k: as32(v) for k, v in init.items()}, [(as32(x), as32(y)) for x, y in batches]


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "adam_weight_decay"])
@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
def test_train_step_equals_torch_clip_and_adamw(mode, kernel, monkeypatch):
    ms.set_context(mode=mode, device_target="CPU")
    monkeypatch.setenv("LMAN_MS_OPTIM_KERNELS", "1" if kernel else "0")
    init, batches = _data()
    train = TrainConfig(learning_rate=1e-2, min_learning_rate=1e-3, warmup_steps=2, max_steps=STEPS,
                        weight_decay=0.1, max_grad_norm=MAX_NORM, lr_scale={"adapter": 3.0})
    model = _Tiny(init)
    opt, schedule = build_optimizer(model.trainable_params(), train)
    if kernel and opt.clip_adamw is None:
        pytest.skip("the clip + AdamW kernel cannot be built here (no C++ compiler?)")
    assert (opt.clip_adamw is not None) == kernel
    step = TrainStep(model, opt, train.max_grad_norm)
    ms_losses = [float(step(Tensor(x), Tensor(y)).asnumpy()) for x, y in batches]

    p = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in init.items()}
    groups = [("adapter.dense.weight", 3.0, 0.1), ("adapter.dense.bias", 3.0, 0.0),
              ("llm.wq.weight", 1.0, 0.1), ("llm.norm.weight", 1.0, 0.0)]
    ref = torch.optim.AdamW([{"params": [p[n]], "weight_decay": wd} for n, _, wd in groups], lr=1e-2,
                            betas=(0.9, 0.999), eps=1e-8)
    torch_losses, norms = [], []
    for i, (x, y) in enumerate(batches):
        for g, (_, scale, _) in zip(ref.param_groups, groups):
            g["lr"] = scale * schedule.value(i)
        ref.zero_grad()
        loss = _torch_loss(p, torch.tensor(x), torch.tensor(y))
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(p.values()), MAX_NORM)))
        ref.step()
        torch_losses.append(float(loss.detach()))

    assert min(norms) > 2 * MAX_NORM                    # clipping scaled every step
    np.testing.assert_allclose(ms_losses, torch_losses, rtol=1e-5)
    for name, param in p.items():
        ours = next(q for q in model.trainable_params() if q.name == name)
        np.testing.assert_allclose(ours.asnumpy(), param.detach().numpy(), atol=1e-5, err_msg=name)
        assert np.abs(ours.asnumpy() - init[name]).max() > 1e-3     # it did move
    assert int(opt.global_step.asnumpy()[0]) == STEPS
    # group order (by lr scale, then decayed first): the order TrainStep's gradients follow
    assert [q.name for q in opt.parameters] == ["llm.wq.weight", "llm.norm.weight", "adapter.dense.weight",
                                                "adapter.dense.bias"]


@pytest.mark.parametrize("threads", ["1", "3"])
def test_kernel_equals_fallback_on_tensors_of_several_chunks(threads, monkeypatch):
    """Tensors cut into several chunks, shared by 1 or 3 threads: the same update as the AdamWeightDecay path."""
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    monkeypatch.setenv("LMAN_MS_KERNEL_THREADS", threads)
    rng = np.random.default_rng(1)
    shapes = {"adapter.big.weight": (300, 700), "adapter.big.bias": (700,), "llm.wq.weight": (3, 5)}
    init = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    grads = [{k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()} for _ in range(3)]
    train = TrainConfig(learning_rate=1e-2, warmup_steps=1, max_steps=3, weight_decay=0.1, lr_scale={"llm": 0.5})
    out = {}
    for kernel in (True, False):
        monkeypatch.setenv("LMAN_MS_OPTIM_KERNELS", "1" if kernel else "0")
        params = [ms.Parameter(Tensor(v), name=k) for k, v in init.items()]
        opt, _ = build_optimizer(params, train)
        if kernel and opt.clip_adamw is None:
            pytest.skip("the clip + AdamW kernel cannot be built here (no C++ compiler?)")
        for g in grads:
            opt(tuple(Tensor(g[p.name]) for p in opt.parameters), 100.0)   # clipping active: the norm is ~530
        out[kernel] = {p.name: p.asnumpy() for p in params}
    for name in shapes:
        np.testing.assert_allclose(out[True][name], out[False][name], atol=1e-6, err_msg=name)
