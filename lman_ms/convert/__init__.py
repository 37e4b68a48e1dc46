"""Hugging Face <-> MindSpore weight conversion: streaming I/O (``common``), one rule table per model read both ways
(``mapping``), and the CLIP (``clip``) and LLaMA/Vicuna (``llama``) tables."""
from lman_ms.convert.common import CheckpointError

__all__ = ["CheckpointError"]
