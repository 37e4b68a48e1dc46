"""torch.optim.AdamW (bias-corrected moments, decoupled weight decay) with global-norm clipping, fused.

Why: mindformers' AdamW (what ``build_optimizer`` used before) runs ~20 element-wise ops per parameter, two of them
powers of the step, and ``ops.clip_by_global_norm`` ~5 more. On CPU every op is a kernel launch and a pass over the
tensor, and the launches do not get faster with more threads: measured on the training-step benchmark (128 trainable tensors,
9M values, 2 threads, machine shared) the two took ~290 ms of a ~1.1 s step, where forward and backward took ~0.8 s;
the custom op below takes ~12 ms there.

Two implementations of the same update:

* ``adamw_kernel.cc``: clipping and the update of every parameter in one custom op (two passes over the
  parameters, in place), when it can be built (CPU, a C++ compiler; see ``adamw_kernel.py``).
* otherwise MindSpore's ``AdamWeightDecay`` kernel, one per parameter, in place, without bias correction:

      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  var -= lr' (m / (sqrt(v) + eps') + wd' var)

  torch's step, with c1 = 1 - b1^t and c2 = 1 - b2^t, is var = var (1 - lr wd) - lr/c1 m / (sqrt(v)/sqrt(c2) + eps),
  the kernel's with lr' = lr sqrt(c2)/c1, eps' = eps sqrt(c2) and wd' = wd c1/sqrt(c2) (so lr' wd' = lr wd), computed
  once per step and group; clipping is ``lman_ms.train.clip``.

Both equal torch.nn.utils.clip_grad_norm_ + torch.optim.AdamW to float rounding (tests/train/test_fused_adamw.py).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops
from mindspore.ops import composite as C

from lman_ms.train.adamw_kernel import load_clip_adamw
from lman_ms.train.clip import clip_by_global_norm

_fused_update = C.MultitypeFuncGraph("lman_fused_adamw")


@_fused_update.register("Function", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                        "Tensor")
def _update(kernel, beta1, beta2, eps, lr, decay, param, m, v, grad):
    return ops.depend(True, kernel(param, m, v, lr, beta1, beta2, eps, decay, ops.cast(grad, param.dtype)))


class FusedAdamW(nn.Optimizer):
    """AdamW over ``groups`` (dicts with ``params``, ``weight_decay`` and optionally ``lr``, a schedule or a float,
    else ``learning_rate``). ``parameters`` are in group order; the moments are Parameters ``adam_m.<name>`` and
    ``adam_v.<name>`` (mindformers' AdamW names, so earlier checkpoints resume), the step ``global_step``.

    Called as ``optimizer(grads, max_grad_norm)``: the gradients are clipped to that global norm first (none when
    it is 0), which ``TrainStep`` then leaves to the optimizer (``clips_gradients``)."""

    clips_gradients = True

    def __init__(self, groups: Sequence[dict], learning_rate, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(learning_rate, [dict(g) for g in groups])
        bad = sorted({str(p.dtype) for p in self._parameters} - {str(ms.float32)})
        if bad:
            raise TypeError(f"FusedAdamW: parameters of dtype {bad[0]} (float32 only)")
        self.beta1 = Tensor(np.float32(betas[0]))
        self.beta2 = Tensor(np.float32(betas[1]))
        self.eps = Tensor(np.float32(eps))
        self.moments1 = self._parameters.clone(prefix="adam_m", init="zeros")
        self.moments2 = self._parameters.clone(prefix="adam_v", init="zeros")
        self.schedules = nn.CellList([self._schedule(g.get("lr", learning_rate)) for g in groups])
        self.decays = tuple(Tensor(np.float32(g.get("weight_decay", 0.0))) for g in groups)
        # each group a contiguous slice of the parameters (the base class keeps them in group order)
        bounds: List[Tuple[int, int]] = []
        for g in groups:
            start = bounds[-1][1] if bounds else 0
            bounds.append((start, start + len(g["params"])))
        self.bounds = tuple(bounds)
        self.clip_adamw = load_clip_adamw(len(self._parameters))
        if self.clip_adamw is not None:
            self.group_of = Tensor(np.concatenate([np.full(e - s, i, np.int32) for i, (s, e) in enumerate(bounds)]))
            self.decay_all = Tensor(np.array([g.get("weight_decay", 0.0) for g in groups], np.float32))
            self.hyper = Tensor(np.array([betas[0], betas[1], eps], np.float32))
        else:
            self.kernel = ops.AdamWeightDecay()

    @staticmethod
    def _schedule(lr) -> nn.Cell:
        if isinstance(lr, nn.learning_rate_schedule.LearningRateSchedule):
            return lr
        return _Constant(float(lr))

    def construct(self, gradients, max_grad_norm=0.0):
        lrs = ()
        for schedule in self.schedules:  # before the step moves (in PYNATIVE_MODE global_step is read live)
            lrs += (schedule(self.global_step).reshape(()),)
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        if self.clip_adamw is not None:
            max_norm = ops.ones((1,), ms.float32) * max_grad_norm
            norm = self.clip_adamw(*self._parameters, *self.moments1, *self.moments2, *gradients, ops.stack(lrs),
                                   self.decay_all, self.group_of, self.global_step, self.hyper, max_norm)
            return ops.depend(True, norm)
        if max_grad_norm > 0:
            gradients = clip_by_global_norm(gradients, max_grad_norm)
        t = self.global_step.astype(ms.float32).reshape(())
        c1 = 1.0 - ops.pow(self.beta1, t)
        root_c2 = ops.sqrt(1.0 - ops.pow(self.beta2, t))
        eps = self.eps * root_c2
        done = True
        for i in range(len(self.bounds)):  # unrolled at compile time: a few groups
            start, end = self.bounds[i]
            done = ops.depend(done, self.hyper_map(
                ops.partial(_fused_update, self.kernel, self.beta1, self.beta2, eps, lrs[i] * root_c2 / c1,
                            self.decays[i] * c1 / root_c2),
                self._parameters[start:end], self.moments1[start:end], self.moments2[start:end],
                gradients[start:end]))
        return done


class _Constant(nn.Cell):
    """A fixed learning rate, called like a schedule."""

    def __init__(self, lr: float):
        super().__init__()
        self.lr = Tensor(np.float32(lr))

    def construct(self, global_step):
        return self.lr
