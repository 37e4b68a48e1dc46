"""The optimizer is torch.optim.AdamW (bias-corrected moments, decoupled weight decay) with the same weight-decay
groups and the warmup + cosine schedule: five updates of both agree to float rounding."""
import numpy as np
import mindspore as ms
import torch
from mindspore import Parameter, Tensor

from lman_ms.config import TrainConfig
from lman_ms.train.optim import build_optimizer


def test_updates_equal_torch_adamw_with_groups_and_schedule():
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)
    grads = [(rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)) for _ in range(5)]
    train = TrainConfig(learning_rate=1e-2, min_learning_rate=1e-3, warmup_steps=2, max_steps=5, weight_decay=0.1)

    w, b = Parameter(Tensor(w0), name="adapter.dense.weight"), Parameter(Tensor(b0), name="adapter.dense.bias")
    opt, schedule = build_optimizer([w, b], train)
    for gw, gb in grads:
        opt((Tensor(gw), Tensor(gb)))

    tw, tb = torch.nn.Parameter(torch.tensor(w0)), torch.nn.Parameter(torch.tensor(b0))
    ref = torch.optim.AdamW([{"params": [tw], "weight_decay": 0.1}, {"params": [tb], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    for step, (gw, gb) in enumerate(grads):
        for g in ref.param_groups:
            g["lr"] = schedule.value(step)
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        ref.step()
    np.testing.assert_allclose(w.asnumpy(), tw.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(b.asnumpy(), tb.detach().numpy(), atol=1e-6)
    assert np.abs(w.asnumpy() - w0).max() > 1e-3       # it did move


def test_lr_scale_per_component_equals_torch_groups_with_scaled_lr():
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    rng = np.random.default_rng(1)
    a0, l0 = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)
    grads = [(rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)) for _ in range(4)]
    train = TrainConfig(learning_rate=1e-3, warmup_steps=1, max_steps=4, weight_decay=0.1, lr_scale={"adapter": 5.0})
    a, l = Parameter(Tensor(a0), name="adapter.dense.weight"), Parameter(Tensor(l0), name="llm.wq.weight")
    opt, schedule = build_optimizer([a, l], train)
    order = [p.name for p in opt.parameters]     # groups by scale: gradients follow the optimizer's order
    for ga, gl in grads:
        g = {"adapter.dense.weight": ga, "llm.wq.weight": gl}
        opt(tuple(Tensor(g[n]) for n in order))
    ta, tl = torch.nn.Parameter(torch.tensor(a0)), torch.nn.Parameter(torch.tensor(l0))
    ref = torch.optim.AdamW([{"params": [ta], "weight_decay": 0.1}, {"params": [tl], "weight_decay": 0.1}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    for step, (ga, gl) in enumerate(grads):
        ref.param_groups[0]["lr"], ref.param_groups[1]["lr"] = 5 * schedule.value(step), schedule.value(step)
        ta.grad, tl.grad = torch.tensor(ga), torch.tensor(gl)
        ref.step()
    np.testing.assert_allclose(a.asnumpy(), ta.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(l.asnumpy(), tl.detach().numpy(), atol=1e-6)


def test_lr_scale_rejects_an_unknown_component():
    import pytest
    train = TrainConfig(lr_scale={"vision": 2.0})
    with pytest.raises(ValueError, match=r"train.lr_scale.vision: unknown component"):
        build_optimizer([Parameter(Tensor(np.ones((2, 2), np.float32)), name="adapter.w")], train)
