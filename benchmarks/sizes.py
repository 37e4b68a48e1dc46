"""Model sizes of the training-step, MFU and generation benchmarks.

``small`` is the size the issue names (4-layer ViT of width 256 at image 112, 2-layer adapter of width 256, 4-layer
LLaMA of width 512 with Vicuna's 32000-token vocabulary); ``quick`` is a toy size for ``--quick`` (tests).
The LLM's ``max_position_embeddings`` is set to the exact stage-2 sequence length
(prefix + query tokens + text): ``VicunaDecoder`` pads every input to it, and the PyTorch side sees no padding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

from lman_ms.config import LManConfig


@dataclass(frozen=True)
class StepShape:
    batch: int          # samples per step
    prefix: int         # conversation-template ids before the visual tokens
    text: int           # instruction + answer ids after them
    answer: int         # trailing text positions that carry labels (eq. 8 is over answer tokens only)


_SMALL = {
    "vision": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                   image_size=112, patch_size=14),
    "text": dict(vocab_size=1000, hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=32, projection_dim=256,
                 bos_token_id=998, eos_token_id=999, pad_token_id=999),
    "adapter": dict(num_hidden_layers=2, hidden_size=256, intermediate_size=1024, num_attention_heads=4,
                    num_query_tokens=32, num_instruction_tokens=16),
    "llm": dict(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                num_attention_heads=8),
}
_SMALL_SHAPE = StepShape(batch=4, prefix=4, text=92, answer=32)   # LLM sequence 4 + 32 + 92 = 128

_QUICK = {
    "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   image_size=32, patch_size=8),
    "text": dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=16, projection_dim=32, bos_token_id=98, eos_token_id=99, pad_token_id=99),
    "adapter": dict(num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                    num_query_tokens=4, num_instruction_tokens=8),
    "llm": dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
}
_QUICK_SHAPE = StepShape(batch=2, prefix=2, text=10, answer=4)


def step_shape(quick: bool) -> StepShape:
    return _QUICK_SHAPE if quick else _SMALL_SHAPE


def lman_config(quick: bool, trainable_llm_layers: int = 1) -> LManConfig:
    """The stage-2 configuration: vision and adapter trained, LLM frozen except its last layer(s) and final norm."""
    sections: Dict[str, Any] = {k: dict(v) for k, v in (_QUICK if quick else _SMALL).items()}
    shape = step_shape(quick)
    sections["llm"]["max_position_embeddings"] = shape.prefix + sections["adapter"]["num_query_tokens"] + shape.text
    sections["train"] = dict(stage=2, trainable_llm_layers=trainable_llm_layers, learning_rate=1e-4,
                             warmup_steps=1, max_steps=1000, weight_decay=0.05, max_grad_norm=1.0)
    sections["context"] = dict(mode="GRAPH_MODE", device_target="CPU")
    return LManConfig.from_dict(sections, source="benchmark sizes")


def generation_llm(quick: bool) -> Dict[str, Any]:
    """HF ``LlamaConfig`` fields of the generation benchmark's decoder: the training benchmark's LLM."""
    llm = dict((_QUICK if quick else _SMALL)["llm"])
    return dict(llm, num_key_value_heads=llm["num_attention_heads"], rms_norm_eps=1e-6, rope_theta=10000.0,
                bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False, hidden_act="silu")


def matmul_size(quick: bool):
    """(n, repeat) of the fp32 matmul peak measurement of the MFU benchmark: the best of ``repeat`` n x n x n."""
    return (256, 3) if quick else (2048, 5)
