"""``adamw_kernel.cc`` (global-norm clipping + torch.optim.AdamW over every parameter in one launch) as a MindSpore
``Custom`` op that updates its parameter, first- and second-moment inputs in place.

The op declares those inputs written (``RW_WRITE`` in its signature, ``side_effect_mem``), as MindSpore's own
in-place optimizer kernels do: in GRAPH_MODE every read of a parameter before the op sees the old value and every
read after it the new one, and the op is never pruned as unused.

The source is compiled on first use (``lman_ms.utils.native``). On a non-CPU device, without a compiler or a writable
cache, or with ``LMAN_MS_OPTIM_KERNELS=0``, ``load_clip_adamw`` returns None and ``FusedAdamW`` uses MindSpore's
``AdamWeightDecay`` kernel per parameter instead.
"""
from __future__ import annotations

import os
from typing import Optional

import mindspore as ms
from mindspore import ops
from mindspore.ops import signature as sig

from lman_ms.utils import native

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "adamw_kernel.cc")
EXTRA_FLAGS = ("-fno-math-errno",)


def load_clip_adamw(num_tensors: int) -> Optional[ops.Custom]:
    """The op for ``num_tensors`` parameters: ``op(*params, *m, *v, *grads, lr, weight_decay, group, step, hyper,
    max_norm) -> global norm`` (see ``adamw_kernel.cc``); None when unavailable (see the module docstring)."""
    if os.environ.get("LMAN_MS_OPTIM_KERNELS", "1") == "0" or ms.get_context("device_target") != "CPU":
        return None
    path = native.build_library(SOURCE, "the optimizer keeps MindSpore's AdamWeightDecay per parameter",
                                EXTRA_FLAGS)
    if path is None:
        return None
    written = tuple(sig.make_sig(f"state{i}", sig.sig_rw.RW_WRITE) for i in range(3 * num_tensors))
    read = tuple(sig.make_sig(f"input{i}") for i in range(num_tensors + 6))
    # the signature is per class in MindSpore, and its length is the number of tensors
    cls = type(f"LmanClipAdamW{num_tensors}", (ops.Custom,), {"__mindspore_signature__": written + read})
    op = cls(f"{path}:LmanClipAdamW", out_shape=lambda *shapes: (1,), out_dtype=lambda *dtypes: ms.float32,
             func_type="aot")
    op.add_prim_attr("side_effect_mem", True)
    return op


__all__ = ["load_clip_adamw"]
