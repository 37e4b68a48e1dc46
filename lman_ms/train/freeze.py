"""Which parameters each stage trains, set in one place (``requires_grad``), with a per-component count.

Stage 1: only the query adapter and the stage-1 heads (V_g projection, temperature, L_vmlm head); the vision and
text encoders are frozen. Stage 2: the vision encoder is unfrozen (paper: "we unfreeze the whole weights of the
vision encoder"), the adapter and projection train, and the LLM trains partially: its last
``trainable_llm_layers`` decoder layers and final norm, or LoRA adapters (``train.lora.rank > 0``).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Dict

from mindspore import nn

from lman_ms.config import TrainConfig

COMPONENTS = ("vision_model", "text_model", "adapter", "vision_proj", "logit_scale", "vmlm_head",
              "language_projection", "llm")

_LAYER = re.compile(r"\.layers\.(\d+)\.")


def component_of(name: str) -> str:
    head = name.split(".", 1)[0]
    return head if head in COMPONENTS else "other"


def _llm_trainable(name: str, num_layers: int, last_n: int) -> bool:
    if ".lora_" in name:
        return True
    m = _LAYER.search(name)
    if m is not None:
        return int(m.group(1)) >= num_layers - last_n
    return last_n > 0 and "norm_out" in name


def apply_freezing(model: nn.Cell, train: TrainConfig, num_llm_layers: int = 0) -> Dict[str, Dict[str, int]]:
    """Set ``requires_grad`` for a stage; returns {component: {"trainable": n, "total": n}} parameter counts."""
    stage = train.stage
    freeze_vision = train.freeze_vision if train.freeze_vision is not None else stage == 1
    counts: Dict[str, Dict[str, int]] = OrderedDict()
    for name, p in model.parameters_and_names():
        comp = component_of(name)
        if comp == "vision_model":
            trainable = not freeze_vision
        elif comp == "text_model":
            trainable = not train.freeze_text
        elif comp == "adapter":
            trainable = not train.freeze_adapter
        elif comp == "llm":
            trainable = (not train.freeze_llm) or _llm_trainable(name, num_llm_layers, train.trainable_llm_layers)
        elif comp == "logit_scale":
            trainable = p.requires_grad  # fixed temperature (eq. 3 literally) stays fixed
        else:
            trainable = True
        p.requires_grad = trainable
        c = counts.setdefault(comp, {"trainable": 0, "total": 0})
        c["total"] += int(p.size)
        c["trainable"] += int(p.size) if trainable else 0
    return counts


def format_counts(counts: Dict[str, Dict[str, int]]) -> str:
    rows = [f"{'component':<22}{'trainable':>16}{'total':>16}"]
    for comp, c in counts.items():
        rows.append(f"{comp:<22}{c['trainable']:>16,}{c['total']:>16,}")
    t = sum(c["trainable"] for c in counts.values())
    n = sum(c["total"] for c in counts.values())
    rows.append(f"{'all':<22}{t:>16,}{n:>16,}")
    return "\n".join(rows)
