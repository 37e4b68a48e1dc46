"""Stage-1 retrieval: image->text and text->image recall@K of a stage-1 model on held-out image-caption records.

The similarity is the one L_lic trains (eq. 3-5): cosine of V_g (mean-pooled visual tokens of the query adapter,
projected) and T_g (the frozen CLIP text embedding). The adapter reads each image with the same captioning
instruction stage-1 training gives it, so evaluation sees the inputs training saw.

Protocol (COCO 5k-test style): every caption of a record is a candidate text. Image->text R@K: an image counts
when one of its own captions is among its K most similar texts. Text->image R@K: a caption counts when its image
is among its K most similar images. Ties are scored pessimistically: a correct item ranks behind every wrong
item with an equal score, so a model whose embeddings are all equal scores 0 rather than 1.
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Dict, List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops
from tqdm import tqdm

from lman_ms.config import LManConfig
from lman_ms.data.pipeline import RecordSet, load_image
from lman_ms.data.humanins.templates import instructions_for
from lman_ms.data.tokenizers import fixed_length, load_clip_tokenizer
from lman_ms.utils.io import atomic_write_text

logger = logging.getLogger("lman_ms.eval")

DEFAULT_KS = (1, 5, 10)


# ---- the metric -----------------------------------------------------------------------------------------------------
def recall_at_k(sim: np.ndarray, image_of_text: Sequence[int], ks: Sequence[int] = DEFAULT_KS,
                tie_tolerance: float = 1e-6) -> Dict[str, float]:
    """Recall@K both ways from ``sim`` (N_images, N_texts); ``image_of_text[j]`` is the image of caption j.

    Ties are pessimistic: a wrong item scoring within ``tie_tolerance`` (relative, at least absolute) of the
    correct one ranks ahead of it. The tolerance is there because float32 similarities of equal embeddings are
    not always bit-equal: a CPU's GEMM rounds rows in different tiles differently (seen on an AMD EPYC, not on
    an Intel Xeon), and a rank should not depend on which.

    Returns ``{"i2t_R@1": ..., "t2i_R@1": ..., ...}`` as fractions, plus ``i2t_rank``/``t2i_rank``: the mean
    0-based rank of the best correct item (0 is perfect)."""
    sim = np.asarray(sim, np.float64)
    owner = np.asarray(image_of_text, np.int64)
    n_img, n_txt = sim.shape
    if owner.shape != (n_txt,):
        raise ValueError(f"image_of_text has {owner.shape[0]} entries for {n_txt} texts")
    if owner.size and (owner.min() < 0 or owner.max() >= n_img):
        raise ValueError(f"image_of_text refers to images outside 0..{n_img - 1}")
    positive = owner[None, :] == np.arange(n_img)[:, None]                  # (N_img, N_txt)
    if not positive.any(1).all():
        raise ValueError("every image needs at least one caption")
    # image -> text: wrong texts scoring >= the image's best own caption
    def ahead(correct):       # wrong items at or above the correct score, ties within the tolerance included
        return (sim >= correct - tie_tolerance * np.maximum(1.0, np.abs(correct))) & ~positive
    best_pos = np.where(positive, sim, -np.inf).max(1, keepdims=True)
    i2t_rank = ahead(best_pos).sum(1)
    # text -> image: wrong images scoring >= the caption's own image
    t2i_rank = ahead(sim[owner, np.arange(n_txt)][None, :]).sum(0)
    out: Dict[str, float] = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float((i2t_rank < k).mean())
    for k in ks:
        out[f"t2i_R@{k}"] = float((t2i_rank < k).mean())
    out["i2t_rank"] = float(i2t_rank.mean())
    out["t2i_rank"] = float(t2i_rank.mean())
    return out


def chance_recall(image_of_text: Sequence[int], n_images: int, ks: Sequence[int] = DEFAULT_KS) -> Dict[str, float]:
    """Expected recall@K of random scores (no ties), to read the model's numbers against."""
    owner = np.asarray(image_of_text, np.int64)
    n_txt = owner.size
    per_image = np.bincount(owner, minlength=n_images)
    out = {}
    for k in ks:
        # an image misses when its c captions all fall outside K random picks among n_txt
        miss = [math.comb(n_txt - c, k) / math.comb(n_txt, k) if n_txt >= k else 0.0 for c in per_image]
        out[f"i2t_R@{k}"] = float(1.0 - np.mean(miss))
    for k in ks:
        out[f"t2i_R@{k}"] = float(min(1.0, k / n_images))
    return out


# ---- embeddings -----------------------------------------------------------------------------------------------------
def _normalize(x):
    return x / ops.sqrt((x * x).sum(-1, keepdims=True) + 1e-12)


class ImageEmbedding(nn.Cell):
    """L2-normalised V_g (eq. 3) of a batch of images and their instruction tokens."""

    def __init__(self, model):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, pixel_values, instruction_ids, instruction_mask):
        visual = self.model.visual_tokens(pixel_values, instruction_ids, instruction_mask)
        return _normalize(self.model.global_visual_embedding(visual).astype(ms.float32))


class TextEmbedding(nn.Cell):
    """L2-normalised T_g of a batch of captions (the frozen CLIP text encoder)."""

    def __init__(self, model):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, caption_ids, caption_mask):
        _, t_g = self.model.text_model(caption_ids, caption_mask)
        return _normalize(t_g.astype(ms.float32))


def _run_padded(cell, chunk: List[np.ndarray], batch_size: int) -> np.ndarray:
    """``cell`` on one batch; a short last batch is padded by repeating its last row (so graph mode compiles one
    shape) and the padding is dropped from the output."""
    real = chunk[0].shape[0]
    if real < batch_size:
        chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - real, 0)]) for c in chunk]
    return cell(*[Tensor(c) for c in chunk]).asnumpy()[:real]


def caption_inputs(cfg: LManConfig, records: List[dict], tokenizer):
    """Instruction and caption token arrays for ``records``, and the image index of every caption."""
    n_ins, n_cap, seed = cfg.adapter.num_instruction_tokens, cfg.text.max_position_embeddings, cfg.train.seed
    ins = [fixed_length(tokenizer, instructions_for("caption", r["id"], 0, 0, 1, seed)[0], n_ins) for r in records]
    caps, owner = [], []
    for i, r in enumerate(records):
        texts = (r.get("target") or {}).get("captions") or [r["answer"]]
        for t in texts:
            caps.append(fixed_length(tokenizer, t, n_cap))
            owner.append(i)
    return (np.stack([a for a, _ in ins]), np.stack([m for _, m in ins]), np.stack([a for a, _ in caps]),
            np.stack([m for _, m in caps]), np.asarray(owner, np.int64))


def retrieval_image_size(cfg: LManConfig) -> int:
    caption = cfg.data.tasks.get("caption")
    return caption.image_size if caption is not None else cfg.vision.image_size


def evaluate_retrieval(model, cfg: LManConfig, records: List[dict], tokenizer, batch_size: int = 32,
                       ks: Sequence[int] = DEFAULT_KS, progress: bool = True) -> dict:
    """Recall@K of ``model`` (an ``LMan`` built for stage 1) on caption ``records`` (with ``image_path``)."""
    if not records:
        raise ValueError("no caption records to evaluate")
    model.set_train(False)
    size = retrieval_image_size(cfg)
    ins_ids, ins_mask, cap_ids, cap_mask, owner = caption_inputs(cfg, records, tokenizer)
    image_cell, text_cell = ImageEmbedding(model), TextEmbedding(model)
    v_g, t_g = [], []
    for start in tqdm(range(0, len(records), batch_size), desc="images", disable=not progress, leave=False):
        end = start + batch_size
        pixels = np.stack([load_image(r["image_path"], size) for r in records[start:end]])
        v_g.append(_run_padded(image_cell, [pixels, ins_ids[start:end], ins_mask[start:end]], batch_size))
    for start in tqdm(range(0, owner.size, batch_size), desc="captions", disable=not progress, leave=False):
        end = start + batch_size
        t_g.append(_run_padded(text_cell, [cap_ids[start:end], cap_mask[start:end]], batch_size))
    v_g, t_g = np.concatenate(v_g), np.concatenate(t_g)
    sim = v_g @ t_g.T
    result = {"num_images": len(records), "num_captions": int(owner.size), "image_size": size}
    result.update(recall_at_k(sim, owner, ks))
    result["chance"] = chance_recall(owner, len(records), ks)
    return result


# ---- model and records from disk ------------------------------------------------------------------------------------
def load_stage1_model(cfg: LManConfig, ckpt: str):
    """A stage-1 ``LMan`` with every parameter from ``ckpt`` (the one loader, ``lman_ms.models.loader``); a
    parameter missing from it, an extra tensor or one of another shape is an error naming it."""
    from lman_ms.models.loader import load_model
    return load_model(ckpt, cfg, stage=1)[0]


def load_caption_records(path: str, split: str = "test", image_root: str = "",
                         max_records: Optional[int] = None) -> List[dict]:
    """Caption records (task ``caption``) of ``split`` from a HumanIns folder or JSONL file, first ``max_records``."""
    records = RecordSet.load(path, split, image_root, tasks=["caption"]).records
    return records[:max_records] if max_records else records


def run_retrieval(cfg: LManConfig, ckpt: str, records_path: str, split: str = "test",
                  out: Optional[str] = None, batch_size: int = 32, max_records: Optional[int] = None,
                  ks: Sequence[int] = DEFAULT_KS, progress: bool = True) -> dict:
    """Load, evaluate and write the JSON (``out``; default ``retrieval_<split>.json`` beside the checkpoint)."""
    from lman_ms.models.loader import resolve_checkpoint
    records = load_caption_records(records_path, split, cfg.data.image_root, max_records)
    tokenizer = load_clip_tokenizer(cfg.data.clip_tokenizer_path or cfg.data.tokenizer_path)
    model = load_stage1_model(cfg, ckpt)
    result = evaluate_retrieval(model, cfg, records, tokenizer, batch_size, ks, progress)
    result.update({"checkpoint": resolve_checkpoint(ckpt), "records": records_path, "split": split})
    out = out or os.path.join(os.path.dirname(result["checkpoint"]), f"retrieval_{split}.json")
    atomic_write_text(out, json.dumps(result, indent=2, sort_keys=True) + "\n")
    result["output"] = out
    return result


def format_result(result: dict) -> str:
    """A small Markdown table of recall vs chance."""
    keys = [k for k in result if k.startswith(("i2t_R@", "t2i_R@"))]
    rows = ["| metric | model | chance |", "|---|---:|---:|"]
    for k in keys:
        rows.append(f"| {k} | {100 * result[k]:.2f} | {100 * result['chance'][k]:.2f} |")
    rows.append(f"\n{result['num_images']} images, {result['num_captions']} captions; mean rank of the first "
                f"correct item: i2t {result['i2t_rank']:.2f}, t2i {result['t2i_rank']:.2f}")
    return "\n".join(rows)
