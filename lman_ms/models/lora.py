"""LoRA for the LLM in stage 2 (paper, "Two-Stage Training Strategy": the LLM is trained partially).

A wrapped projection computes ``y = act(W x + b + (alpha / r) * B A dropout(x))`` (Hu et al., 2021) with
``A`` (r, in) drawn from N(0, 1/r) and ``B`` (out, r) zero, so at initialisation the model is exactly the base
model and eq. (8) starts from the pretrained LLM. ``train.lora.target_modules`` names the mindformers projections
(``wq wk wv wo`` in attention, ``w1 w2 w3`` in the feed-forward block) by their attribute name.

Parameter names: the base weight keeps its name (``llm.llama.model.layers.0.attention.wq.weight``), so converted
Vicuna weights and stage-1 checkpoints still load; the adapters are ``...wq.lora_a`` and ``...wq.lora_b``, which
``freeze.py`` trains (names containing ``.lora_``). :func:`merge_lora` folds ``(alpha / r) B A`` into ``W`` and
restores the plain mindformers cell, for export and inference.

Why not ``mindpet.delta.lora.LoRADense`` (what ``mindformers.pet.LoraAdapter`` uses): it does run on CPU in
GRAPH_MODE in place of a mindformers ``Linear`` (checked here), but its parameters are named
``mindpet_delta_lora_a``/``_b``, which would end up in every checkpoint key and miss both the ``.lora_`` rule of
the freezing helper and the PEFT ``lora_A``/``lora_B`` naming; it is an ``nn.Dense`` subclass that first allocates
a weight of its own and then drops it; and its A initialiser is He-uniform. The wrapper below is the same
computation, reusing the base cell's parameters, ``MatMul`` primitive and activation (so ``w1``'s SiLU is applied
after the LoRA term, as it must be).
"""
from __future__ import annotations

import logging
from typing import List, Tuple

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from lman_ms.config import LManConfig, LoraConfig

logger = logging.getLogger("lman_ms.models")


def _linear_types() -> tuple:
    from mindformers.modules.layers import Linear
    return (Linear, nn.Dense)


class LoRALinear(nn.Cell):
    """A mindformers ``Linear`` (or ``nn.Dense``) plus a rank-``rank`` update; shares the base parameters."""

    def __init__(self, base: nn.Cell, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if getattr(base, "expert_flag", False) or not getattr(base, "transpose_b", True):
            raise ValueError("LoRA supports dense projections with (out, in) weights; got an expert/GMM Linear")
        self.in_channels, self.out_channels = int(base.in_channels), int(base.out_channels)
        self.rank, self.scaling = int(rank), float(alpha) / float(rank)
        self.weight = base.weight
        self.has_bias = bool(base.has_bias)
        if self.has_bias:
            self.bias = base.bias
        # mindformers Linear computes in ``dtype`` (bf16 on Ascend) with fp32 parameters; nn.Dense in its weight's
        self.compute_dtype = getattr(base, "dtype", None) if hasattr(base, "param_init_type") else base.weight.dtype
        self.matmul = base.matmul                      # keeps the base cell's shard strategy, if any
        self.lora_matmul = ops.MatMul(transpose_b=True)
        self.activation = base.activation
        self.activation_flag = bool(base.activation_flag)
        self.use_dropout = dropout > 0
        self.dropout = nn.Dropout(p=dropout) if self.use_dropout else None
        self.lora_a = Parameter(initializer(Normal(sigma=1.0 / self.rank), (self.rank, self.in_channels),
                                            base.weight.dtype), name="lora_a")
        self.lora_b = Parameter(initializer("zeros", (self.out_channels, self.rank), base.weight.dtype),
                                name="lora_b")
        # the original cell, outside the cell tree (not a sub-cell, no duplicate parameters); merge_lora puts it back
        object.__setattr__(self, "_base_cell", base)

    def construct(self, x):
        out_shape = x.shape[:-1] + (self.out_channels,)
        ori_dtype = x.dtype
        x = x.reshape((-1, self.in_channels)).astype(self.compute_dtype)
        y = self.matmul(x, self.weight.astype(self.compute_dtype))
        if self.has_bias:
            y = y + self.bias.astype(self.compute_dtype)
        h = x
        if self.use_dropout:
            h = self.dropout(h)
        h = self.lora_matmul(h, self.lora_a.astype(self.compute_dtype))
        h = self.lora_matmul(h, self.lora_b.astype(self.compute_dtype))
        y = y + h * self.scaling
        if self.activation_flag:
            y = self.activation(y)
        return y.astype(ori_dtype).reshape(out_shape)

    def delta_weight(self) -> np.ndarray:
        """(alpha / r) B A in float32, shape (out, in): what :func:`merge_lora` adds to W."""
        a = self.lora_a.asnumpy().astype(np.float32)
        b = self.lora_b.asnumpy().astype(np.float32)
        return self.scaling * (b @ a)


def _parent(model: nn.Cell, path: str) -> Tuple[nn.Cell, str]:
    parts = path.split(".")
    node = model
    for p in parts[:-1]:
        node = node._cells[p]  # pylint: disable=protected-access
    return node, parts[-1]


def _replace(model: nn.Cell, path: str, new: nn.Cell) -> None:
    parent, attr = _parent(model, path)
    # straight into the child table, as mindformers' own LoRA adapter does: Cell.__setattr__ would re-prefix the
    # shared parameters' names with the attribute name only (``wq.weight``) and break the checkpoint keys
    parent._cells[attr] = new  # pylint: disable=protected-access


def _name_parameters(cell: nn.Cell, path: str) -> None:
    for name, p in cell.parameters_and_names():
        p.name = f"{path}.{name}"


def apply_lora(model: nn.Cell, lora: LoraConfig, root: str = "llm") -> List[str]:
    """Wrap every projection under ``model.<root>`` whose attribute name is in ``lora.target_modules``.

    Returns the wrapped cell paths. Call it after the pretrained weights are loaded (their keys have no LoRA
    parameters) and before the freezing helper and the first compilation (a compiled graph does not see cells
    swapped later). A target that matches no projection is an error naming the key."""
    if lora.rank <= 0:
        raise ValueError(f"train.lora.rank must be > 0 to apply LoRA, got {lora.rank}")
    if lora.alpha <= 0:
        raise ValueError(f"train.lora.alpha must be > 0, got {lora.alpha}")
    if not 0.0 <= lora.dropout < 1.0:
        raise ValueError(f"train.lora.dropout must be in [0, 1), got {lora.dropout}")
    mode = ms.get_auto_parallel_context("parallel_mode")
    if mode in ("semi_auto_parallel", "auto_parallel"):
        raise NotImplementedError("LoRA sets no shard strategies for its two MatMuls: use data parallel "
                                  "(parallel.model_parallel = pipeline_stage = 1) or train.trainable_llm_layers")
    linear = _linear_types()
    targets = set(lora.target_modules)
    if not targets:
        raise ValueError("train.lora.target_modules is empty")
    found, seen_names = [], set()
    for path, cell in model.cells_and_names():
        if not (path == root or path.startswith(root + ".")):
            continue
        attr = path.rsplit(".", 1)[-1]
        if isinstance(cell, LoRALinear):
            raise ValueError(f"LoRA is already applied ({path})")
        if isinstance(cell, linear):
            seen_names.add(attr)
            if attr in targets:
                found.append((path, cell))
    missing = sorted(targets - {p.rsplit(".", 1)[-1] for p, _ in found})
    if missing:
        raise ValueError(f"train.lora.target_modules: {missing} match no projection under {root!r} "
                         f"(projections there: {sorted(seen_names)})")
    for path, cell in found:
        wrapped = LoRALinear(cell, lora.rank, lora.alpha, lora.dropout)
        _replace(model, path, wrapped)
        _name_parameters(wrapped, path)
    return [p for p, _ in found]


def apply_lora_from_config(model: nn.Cell, cfg: LManConfig) -> List[str]:
    """Stage 2 with ``train.lora.rank > 0``: :func:`apply_lora` on the LLM, logged; otherwise nothing."""
    lora = cfg.train.lora
    if cfg.train.stage != 2 or lora.rank <= 0:
        return []
    paths = apply_lora(model, lora)
    logger.info("LoRA rank %d alpha %g on %d projections of the LLM (%s)", lora.rank, lora.alpha, len(paths),
                ", ".join(lora.target_modules))
    return paths


def lora_cells(model: nn.Cell) -> List[Tuple[str, LoRALinear]]:
    return [(p, c) for p, c in model.cells_and_names() if isinstance(c, LoRALinear)]


def merge_lora(model: nn.Cell) -> int:
    """Fold W <- W + (alpha / r) B A into every wrapped projection and put the plain cells back; returns how many.

    The merged model has exactly the parameter names of a model without LoRA, so it exports and loads like one.
    Build a new top-level cell (or graph) for inference afterwards: a graph compiled before the merge keeps
    the LoRA branch."""
    cells = lora_cells(model)
    for path, cell in cells:
        w = cell.weight
        merged = w.asnumpy().astype(np.float32) + cell.delta_weight()
        w.set_data(Tensor(merged, dtype=w.dtype))
        base = cell._base_cell  # pylint: disable=protected-access
        _replace(model, path, base)
        _name_parameters(base, path)
    return len(cells)



def lora_parameter_count(llm, lora: LoraConfig) -> int:
    """LoRA parameters for an ``LLMConfig`` from the config alone: r * (in + out) per wrapped projection."""
    if lora.rank <= 0:
        return 0
    d, inter = llm.hidden_size, llm.intermediate_size
    kv = d // llm.num_attention_heads * (llm.num_key_value_heads or llm.num_attention_heads)
    shapes = {"wq": (d, d), "wk": (d, kv), "wv": (d, kv), "wo": (d, d), "w1": (d, inter), "w3": (d, inter),
              "w2": (inter, d)}
    unknown = sorted(set(lora.target_modules) - set(shapes))
    if unknown:
        raise ValueError(f"train.lora.target_modules: {unknown} are not LLaMA projections {sorted(shapes)}")
    per_layer = sum(lora.rank * sum(shapes[t]) for t in set(lora.target_modules))
    return per_layer * llm.num_hidden_layers
