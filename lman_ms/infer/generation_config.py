"""Generation settings and their defaults: the one place every consumer (predictor, ``tools/infer.py``,
``tools/lite_infer.py``, the server, the chat, the ablations) takes them from. Free of MindSpore, so that command
lines can show the defaults in ``--help`` without importing it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Union


@dataclass
class GenerationConfig:
    max_new_tokens: int = 128         # the one default of every tool (infer, lite_infer, serve, chat)
    do_sample: bool = False            # False: greedy
    temperature: float = 1.0
    top_k: int = 0                     # 0: off
    top_p: float = 1.0                 # 1.0: off
    repetition_penalty: float = 1.0    # CTRL-style, as HF: positive logits divided, negative multiplied
    eos_token_id: Optional[Union[int, List[int]]] = None  # None: the decoder config's eos_token_id
    pad_token_id: Optional[int] = None  # None: the decoder config's pad_token_id
    seed: Optional[int] = None         # sampling seed; None draws fresh entropy
    output_scores: bool = False        # keep each step's raw next-token logits (batch, vocab)

    def validate(self) -> "GenerationConfig":
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        return self
