"""One optimisation step as a single GRAPH_MODE cell: forward, backward, global-norm clipping, AdamW update."""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops


class TrainStep(nn.Cell):
    """``loss_cell`` returns either a scalar loss or a tuple whose first element is the loss (the rest is logged,
    not differentiated). Only ``optimizer.parameters`` (the trainable ones) get gradients."""

    def __init__(self, loss_cell: nn.Cell, optimizer: nn.Optimizer, max_grad_norm: float = 1.0,
                 has_aux: bool = False, loss_scale: float = 1.0):
        super().__init__(auto_prefix=False)
        self.loss_cell = loss_cell
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.max_grad_norm = max_grad_norm
        self.has_aux = has_aux
        self.loss_scale = loss_scale
        self.grad_fn = ms.value_and_grad(self._scaled, None, self.weights, has_aux=has_aux)

    def _scaled(self, *inputs):
        out = self.loss_cell(*inputs)
        if self.has_aux:
            return (out[0] * self.loss_scale,) + tuple(out[1:])
        return out * self.loss_scale

    def construct(self, *inputs):
        out, grads = self.grad_fn(*inputs)
        if self.loss_scale != 1.0:
            grads = ops.HyperMap()(ops.partial(ops.mul, 1.0 / self.loss_scale), grads)
        if self.max_grad_norm > 0:
            grads = ops.clip_by_global_norm(grads, self.max_grad_norm)
        self.optimizer(grads)
        if self.has_aux:
            return (out[0] / self.loss_scale,) + tuple(out[1:])
        return out / self.loss_scale
