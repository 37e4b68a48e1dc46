"""Initial weights of a training run, from the config's ``train`` section:

* ``vision_init`` / ``text_init`` / ``llm_init``: Hugging Face folders (CLIP, CLIP, Vicuna), converted in memory
  with the same weight maps as ``tools/convert_weights.py``; ``text_init`` also initialises the adapter's
  self-attention, FFN and embeddings from the CLIP text layers (paper: "a query adapter initialized by
  CLIP-Xformer") when ``adapter.init_from_text`` is on;
* ``init_checkpoint``: an lman_ms checkpoint (e.g. stage 1's, whose adapter starts stage 2): every parameter
  whose name and shape match is loaded, the rest is reported.
"""
from __future__ import annotations

import logging

import numpy as np

from lman_ms.config import LManConfig
from lman_ms.models.loader import load_matching

logger = logging.getLogger("lman_ms.train")


def _hf_text_state(hf_dir: str) -> dict:
    from lman_ms.convert.common import iter_hf_tensors
    state = {}
    for name, arr in iter_hf_tensors(hf_dir, progress=False):
        if name.startswith("text_model.") or name.startswith("encoder.") or name.startswith("embeddings.") \
                or name.startswith("final_layer_norm."):
            state[name] = np.asarray(arr, np.float32)
    return state


def load_pretrained(model, cfg: LManConfig) -> None:
    t = cfg.train
    if t.vision_init:
        from lman_ms.convert.clip import load_vision_weights
        n = load_vision_weights(model.vision_model, t.vision_init, progress=True)
        logger.info("vision tower: %d tensors from %s", n, t.vision_init)
    if t.text_init:
        if getattr(model, "text_model", None) is not None:
            from lman_ms.convert.clip import load_text_weights
            n = load_text_weights(model.text_model, t.text_init, progress=True)
            logger.info("text tower: %d tensors from %s", n, t.text_init)
        if cfg.adapter.init_from_text:
            done = model.adapter.init_from_text(_hf_text_state(t.text_init))
            logger.info("adapter: %d tensors initialised from the CLIP text transformer", len(done))
    if t.llm_init:
        from lman_ms.convert.llama import load_llama_state
        model.llm.load_state(load_llama_state(t.llm_init), source=t.llm_init)
        logger.info("LLM weights from %s", t.llm_init)
    if t.init_checkpoint:
        load_matching(model, t.init_checkpoint)
