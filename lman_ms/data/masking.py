"""Label conventions shared by the data pipeline and the losses: the ignored-label value and the host-side token
masking of L_vmlm, eq. (6). They live with the data because the pipeline writes them; the losses only read them."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

# A label the losses skip (prompt, padding and visual positions; unmasked caption tokens), as in HF transformers.
IGNORE_INDEX = -100


def mask_tokens(input_ids: np.ndarray, attention_mask: np.ndarray, vocab_size: int, rng: np.random.Generator,
                mlm_probability: float = 0.15, special_ids: Sequence[int] = (), mask_id: Optional[int] = None
                ) -> Tuple[np.ndarray, np.ndarray]:
    """BERT-style masking for L_vmlm on the host: pick ``mlm_probability`` of the real, non-special tokens; of
    those 80% become ``mask_id``, 10% a random token, 10% stay. Returns (masked ids, labels with IGNORE_INDEX
    elsewhere). At least one token per row is picked so every caption contributes to eq. (6).

    CLIP's BPE has no [MASK] token; by default the last vocabulary id is used (the decision is in the README)."""
    ids = np.array(input_ids, copy=True)
    mask_id = vocab_size - 1 if mask_id is None else mask_id
    candidates = (np.asarray(attention_mask) > 0) & ~np.isin(ids, np.asarray(list(special_ids), dtype=ids.dtype))
    picked = (rng.random(ids.shape) < mlm_probability) & candidates
    for row in np.where(~picked.any(1) & candidates.any(1))[0]:
        picked[row, rng.choice(np.flatnonzero(candidates[row]))] = True
    labels = np.where(picked, ids, IGNORE_INDEX)
    roll = rng.random(ids.shape)
    ids[picked & (roll < 0.8)] = mask_id
    rand = picked & (roll >= 0.8) & (roll < 0.9)
    ids[rand] = rng.integers(0, vocab_size, size=int(rand.sum()))
    return ids, labels.astype(np.int32)


__all__ = ["IGNORE_INDEX", "mask_tokens"]
