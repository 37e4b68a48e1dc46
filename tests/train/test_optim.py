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
