"""Optimisation steps as GRAPH_MODE cells: forward, backward, (data-parallel all-reduce), global-norm clipping,
AdamW update. With gradient accumulation the host calls :class:`AccumulateStep` for the first N-1 micro-batches
and :class:`TrainStep` (which adds the last micro-batch and applies the mean) for the N-th."""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops
from mindspore.context import ParallelMode

from lman_ms.train.clip import clip_by_global_norm


def _grad_reducer(weights):
    mode = ms.get_auto_parallel_context("parallel_mode")
    if mode in (ParallelMode.DATA_PARALLEL, ParallelMode.HYBRID_PARALLEL):
        from mindspore.communication import get_group_size
        return nn.DistributedGradReducer(weights, mean=True, degree=get_group_size())
    return None


class _GradMixin:
    def _init_grad(self, loss_cell, weights, has_aux, loss_scale):
        self.loss_cell = loss_cell
        self.weights = weights
        self.has_aux = has_aux
        self.loss_scale = loss_scale
        self.grad_fn = ms.value_and_grad(self._scaled, None, weights, has_aux=has_aux)

    def _scaled(self, *inputs):
        out = self.loss_cell(*inputs)
        if self.has_aux:
            return (out[0] * self.loss_scale,) + tuple(out[1:])
        return out * self.loss_scale

    def _unscale(self, out):
        if self.has_aux:
            return (out[0] / self.loss_scale,) + tuple(out[1:])
        return out / self.loss_scale


class AccumulateStep(nn.Cell, _GradMixin):
    """Adds this micro-batch's gradients into ``buffers`` (no update)."""

    def __init__(self, loss_cell, weights, buffers, has_aux=False, loss_scale=1.0):
        super().__init__(auto_prefix=False)
        self._init_grad(loss_cell, weights, has_aux, loss_scale)
        self.buffers = buffers

    def construct(self, *inputs):
        out, grads = self.grad_fn(*inputs)
        ops.HyperMap()(ops.assign_add, self.buffers, grads)
        return self._unscale(out)


class TrainStep(nn.Cell, _GradMixin):
    """``loss_cell`` returns a scalar loss, or with ``has_aux`` a tuple whose first element is the loss (the rest
    is logged, not differentiated). Only ``optimizer.parameters`` (the trainable ones) get gradients.
    ``accumulation`` > 1 averages the gradients kept in ``self.buffers`` by :class:`AccumulateStep` with this
    micro-batch's before the update, then clears them."""

    def __init__(self, loss_cell: nn.Cell, optimizer: nn.Optimizer, max_grad_norm: float = 1.0,
                 has_aux: bool = False, loss_scale: float = 1.0, accumulation: int = 1):
        super().__init__(auto_prefix=False)
        self._init_grad(loss_cell, optimizer.parameters, has_aux, loss_scale)
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        # FusedAdamW clips inside its update (one pass less over the gradients)
        self.optimizer_clips = bool(getattr(optimizer, "clips_gradients", False))
        self.accumulation = accumulation
        self.reducer = _grad_reducer(self.weights)
        self.buffers = self.weights.clone(prefix="grad_accum", init="zeros") if accumulation > 1 else None

    def accumulate_cell(self) -> AccumulateStep:
        return AccumulateStep(self.loss_cell, self.weights, self.buffers, self.has_aux, self.loss_scale)

    def construct(self, *inputs):
        out, grads = self.grad_fn(*inputs)
        if self.accumulation > 1:
            grads = ops.HyperMap()(ops.add, grads, self.buffers)
            grads = ops.HyperMap()(ops.partial(ops.mul, 1.0 / self.accumulation), grads)
            ops.HyperMap()(ops.assign, self.buffers, ops.HyperMap()(ops.zeros_like, self.buffers))
        if self.loss_scale != 1.0:
            grads = ops.HyperMap()(ops.partial(ops.mul, 1.0 / self.loss_scale), grads)
        if self.reducer is not None:
            grads = self.reducer(grads)
        if self.optimizer_clips:
            self.optimizer(grads, self.max_grad_norm)
        else:
            if self.max_grad_norm > 0:
                grads = clip_by_global_norm(grads, self.max_grad_norm)
            self.optimizer(grads)
        return self._unscale(out)
