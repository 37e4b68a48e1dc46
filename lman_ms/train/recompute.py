"""Activation recomputation (``parallel.recompute``), applied in one place after the model is built.

With recomputation a block keeps only its input for the backward pass and runs its forward again there, instead
of storing every intermediate activation: memory for one more forward of the recomputed blocks. The blocks are the
repeated layers, where nearly all activations live:

* every ViT block (``vision_model.blocks``, mindcv ``Block``): attention maps of (batch, heads, N, N) per layer;
* every query-adapter layer (``adapter.layers``, eq. 2): self-attention over [queries ; instruction], cross-attention
  to V_2k;
* every LLM decoder layer (``llm.layers``, mindformers ``LLamaDecodeLayer``): at 1024 positions x 32 layers the
  largest share of a stage-2 step's memory. ``layer.recompute()`` on each decoder layer is exactly what mindformers
  does for ``recompute_config.recompute: True`` (``LayerSetting.set_recompute`` in
  ``mindformers/parallel_core/training_graph/transformer/utils.py``, 1.9.0), without handing the LLM a whole
  mindformers ``parallel_config``.

Gradients are the same with and without it (tests/train/test_recompute.py: every trainable parameter of the tiny
stage-2 model, LoRA with dropout included, over several steps in GRAPH_MODE on CPU; measured largest difference
2.3e-10, float summation order). MindSpore warns that a random op in a recomputed cell may draw differently the
second time: the recomputed LoRA dropout is a copy of the forward's primitive with the same seeds (in the compiled
graph it is ``recompute_...dropout-Dropout``), so its kernel draws the same mask step after step. That holds for
seeded primitives only, hence :func:`apply_recompute` requires a global seed when LoRA dropout is on; the Trainer
always sets one (``train.seed``) before it builds the model.
"""
from __future__ import annotations

import logging
from typing import Dict, List

import mindspore as ms
from mindspore import nn

from lman_ms.config import LManConfig

logger = logging.getLogger("lman_ms.train")


def recompute_blocks(model: nn.Cell) -> Dict[str, List[nn.Cell]]:
    """{group: cells} that recomputation wraps: the ViT blocks, the adapter layers and (stage 2) the LLM layers."""
    groups = {"vision_model.blocks": list(model.vision_model.blocks),
              "adapter.layers": list(model.adapter.layers)}
    if getattr(model, "llm", None) is not None:
        groups["llm.layers"] = list(model.llm.layers)
    return groups


def apply_recompute(model: nn.Cell, cfg: LManConfig) -> Dict[str, int]:
    """Mark the blocks of :func:`recompute_blocks` for recomputation when ``parallel.recompute`` is on.

    Call once, after LoRA has replaced its projections (a cell configured for recomputation passes the flag to the
    sub-cells it holds at that moment) and before the training step is compiled. Returns {group: count}, empty when
    recomputation is off."""
    if not cfg.parallel.recompute:
        return {}
    if cfg.train.lora.rank > 0 and cfg.train.lora.dropout > 0 and ms.get_seed() is None:
        raise RuntimeError("parallel.recompute with train.lora.dropout > 0 needs mindspore.set_seed before the model "
                           "is built: an unseeded dropout draws a different mask when it is recomputed")
    counts = {}
    for group, cells in recompute_blocks(model).items():
        for cell in cells:
            cell.recompute()
        counts[group] = len(cells)
    logger.info("recomputation on: %s", ", ".join(f"{n} x {g}" for g, n in counts.items()))
    return counts
