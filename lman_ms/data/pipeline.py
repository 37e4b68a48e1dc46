"""Training batches for both stages, as a random-access source wrapped in ``mindspore.dataset.GeneratorDataset``.

Batch ``step`` is a pure function of (seed, step, rank), so
* every data-parallel rank draws the same task for a step (the draw depends on seed and step only) and takes its
  own slice of that task's global batch;
* resuming at step N continues with exactly the batches an uninterrupted run would have seen;
* ``num_parallel_workers`` decode and resize different steps in parallel without changing the order.

Multi-resolution (DESIGN.md section 1): a global batch holds one task; task t is drawn with probability
proportional to size_t ** alpha; each task has its own input size and batch size (``data.tasks``). Text is padded
to a bucket length (a multiple of ``BUCKET``) so that graph mode compiles a bounded number of graphs. Images are
resized to the square input without cropping (a crop would cut away boxes and joints the answer refers to) and
never flipped (a flip would swap left/right joints and move boxes).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from lman_ms.config import LManConfig
from lman_ms.data.conversation import VicunaTemplate, encode_sample, prefix_ids
from lman_ms.data.humanins.builder import image_roots, iter_records
from lman_ms.data.humanins.errors import AnnotationError
from lman_ms.data.humanins.templates import instructions_for
from lman_ms.data.tokenizers import fixed_length
from lman_ms.data.masking import IGNORE_INDEX, mask_tokens

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
BUCKET = 32

STAGE1_COLUMNS = ["pixel_values", "instruction_ids", "instruction_mask", "caption_ids", "caption_mask",
                  "masked_ids", "mlm_labels"]
STAGE2_COLUMNS = ["pixel_values", "instruction_ids", "instruction_mask", "prefix_ids", "input_ids",
                  "attention_mask", "labels"]


# Sources whose records are one face / one person of a larger picture (the box in target["boxes"][0]): the model
# sees that region, as the datasets' own protocols do (ExpW faces, VOC Action person boxes).
CROP_TO_BOX_DATASETS = {"expw", "voc2012_action"}


def crop_box_of(record: dict):
    """The region of the image a record is about, or None for the whole image."""
    if record.get("dataset") in CROP_TO_BOX_DATASETS and record.get("target", {}).get("boxes"):
        return record["target"]["boxes"][0]
    return None


def load_image(path: str, size: int, box=None, margin: float = 0.1) -> np.ndarray:
    """(3, size, size) float32, CLIP-normalised; ``box`` [x1, y1, x2, y2] crops first (with ``margin`` of the box
    size around it). A missing or corrupt file is an error naming it."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if box is not None:
                x1, y1, x2, y2 = box
                mx, my = (x2 - x1) * margin, (y2 - y1) * margin
                im = im.crop((max(0, int(x1 - mx)), max(0, int(y1 - my)), min(im.width, int(x2 + mx) + 1),
                              min(im.height, int(y2 + my) + 1)))
            im = im.resize((size, size), Image.BICUBIC)
    except FileNotFoundError as e:
        raise AnnotationError(path, "image file not found") from e
    except OSError as e:
        raise AnnotationError(path, f"cannot decode image: {e}") from e
    arr = (np.asarray(im, np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


@dataclass
class RecordSet:
    """HumanIns records with absolute image paths, grouped by task."""
    records: List[dict]
    by_task: Dict[str, List[int]]

    @classmethod
    def load(cls, path: str, split: str = "train", image_root: str = "", tasks: Optional[Sequence[str]] = None):
        if not path or not os.path.exists(path):
            raise FileNotFoundError(f"training records not found: {path!r} (data.train_path)")
        roots = image_roots(path) if os.path.isdir(path) else {}
        records, by_task = [], {}
        for r in iter_records(path, split=split if os.path.isdir(path) else None,
                              required=("id", "task", "dataset", "image")):
            if tasks is not None and r["task"] not in tasks:
                continue
            root = roots.get(r["dataset"], image_root)
            r = dict(r, image_path=os.path.join(root, r["image"]))
            by_task.setdefault(r["task"], []).append(len(records))
            records.append(r)
        if not records:
            raise ValueError(f"no {split} records{' of tasks ' + str(list(tasks)) if tasks else ''} under {path}")
        return cls(records, dict(sorted(by_task.items())))


class TaskPlan:
    """Which task and which records make global batch ``step``: a pure function of (seed, step)."""

    def __init__(self, sizes: Dict[str, int], batch_sizes: Dict[str, int], alpha: float, seed: int):
        self.tasks = sorted(sizes)
        n = np.array([sizes[t] for t in self.tasks], np.float64)
        self.probs = n ** alpha / (n ** alpha).sum()
        self.sizes, self.batch_sizes, self.seed = sizes, batch_sizes, seed
        self._draws: List[tuple] = []           # (task, position in that task's stream) per step
        self._consumed = {t: 0 for t in self.tasks}

    def _extend(self, step: int) -> None:
        while len(self._draws) <= step:
            s = len(self._draws)
            t = self.tasks[int(np.random.default_rng([self.seed, s]).choice(len(self.tasks), p=self.probs))]
            self._draws.append((t, self._consumed[t]))
            self._consumed[t] += self.batch_sizes[t]

    def __call__(self, step: int):
        """(task, positions within the task's records) of the global batch at ``step``."""
        self._extend(step)
        task, start = self._draws[step]
        n, ti = self.sizes[task], self.tasks.index(task)
        out = []
        for pos in range(start, start + self.batch_sizes[task]):
            epoch, i = divmod(pos, n)
            out.append(int(np.random.default_rng([self.seed, ti, epoch]).permutation(n)[i]))
        return task, out


class _BatchSource:
    """Random-access source: ``source[step]`` is this rank's share of global batch ``step``."""

    def __init__(self, cfg: LManConfig, records: RecordSet, clip_tokenizer, rank: int = 0, world: int = 1,
                 num_steps: Optional[int] = None):
        self.cfg, self.records, self.clip_tok = cfg, records, clip_tokenizer
        self.rank, self.world = rank, world
        t = cfg.train
        self.num_steps = num_steps or t.max_steps * t.gradient_accumulation_steps
        sizes = {k: len(v) for k, v in records.by_task.items()}
        batch = {k: self.task_setting(k).batch_size for k in sizes}
        for k, b in batch.items():
            if b % world:
                raise ValueError(f"batch size {b} of task {k} is not divisible by the {world} data-parallel ranks")
        self.plan = TaskPlan(sizes, batch, cfg.data.task_sampling_alpha, t.seed)

    def task_setting(self, task: str):
        from lman_ms.config import TaskDataConfig
        s = self.cfg.data.tasks.get(task)
        return s if s is not None else TaskDataConfig(self.cfg.vision.image_size, self.cfg.train.global_batch_size)

    def __len__(self):
        return self.num_steps

    def rank_records(self, step: int):
        task, positions = self.plan(step)
        per_rank = len(positions) // self.world
        mine = positions[self.rank * per_rank:(self.rank + 1) * per_rank]
        ids = self.records.by_task[task]
        return task, [self.records.records[ids[p]] for p in mine]

    def _instruction(self, text: str):
        return fixed_length(self.clip_tok, text, self.cfg.adapter.num_instruction_tokens)


class Stage2Source(_BatchSource):
    def __init__(self, cfg, records, llm_tokenizer, clip_tokenizer, rank=0, world=1, num_steps=None,
                 template: VicunaTemplate = VicunaTemplate()):
        super().__init__(cfg, records, clip_tokenizer, rank, world, num_steps)
        self.tok, self.template = llm_tokenizer, template
        self.prefix = prefix_ids(llm_tokenizer, template)[None]
        budget = cfg.llm.max_position_embeddings - self.prefix.shape[1] - cfg.adapter.num_query_tokens
        self.max_text = min(cfg.train.max_text_length, budget)
        if self.max_text < BUCKET:
            raise ValueError(f"llm.max_position_embeddings={cfg.llm.max_position_embeddings} leaves {budget} text "
                             f"positions after the {self.prefix.shape[1]}-token prefix and "
                             f"{cfg.adapter.num_query_tokens} visual tokens")

    def __getitem__(self, step):
        task, recs = self.rank_records(int(step))
        size = self.task_setting(task).image_size
        pixels = np.stack([load_image(r["image_path"], size, crop_box_of(r)) for r in recs])
        ins = [self._instruction(r["instruction"]) for r in recs]
        enc = [encode_sample(self.tok, r["instruction"], r["answer"], self.max_text, r["id"], self.template)
               for r in recs]
        length = min(self.max_text, -(-max(len(i) for i, _ in enc) // BUCKET) * BUCKET)
        ids = np.full((len(recs), length), self.tok.pad_id, np.int32)
        mask = np.zeros((len(recs), length), np.float32)
        labels = np.full((len(recs), length), IGNORE_INDEX, np.int32)
        for b, (i, l) in enumerate(enc):
            ids[b, :len(i)], mask[b, :len(i)], labels[b, :len(l)] = i, 1, l
        return (pixels, np.stack([i for i, _ in ins]), np.stack([m for _, m in ins]), self.prefix.astype(np.int32),
                ids, mask, labels)


class Stage1Source(_BatchSource):
    """Image-caption batches for L_lic and L_vmlm; the adapter's instruction is a captioning request."""

    def __getitem__(self, step):
        step = int(step)
        task, recs = self.rank_records(step)
        size = self.task_setting(task).image_size
        rng = np.random.default_rng([self.cfg.train.seed, step, self.rank, 1])
        pixels = np.stack([load_image(r["image_path"], size) for r in recs])
        length = self.cfg.text.max_position_embeddings
        captions, ins = [], []
        for r in recs:
            caps = r["target"].get("captions") or [r["answer"]]
            captions.append(fixed_length(self.clip_tok, caps[int(rng.integers(len(caps)))], length))
            ins.append(self._instruction(instructions_for("caption", r["id"], 0, 0, 1, self.cfg.train.seed)[0]))
        cap_ids = np.stack([c for c, _ in captions])
        cap_mask = np.stack([m for _, m in captions])
        specials = [self.clip_tok.bos_id, self.clip_tok.eos_id, self.clip_tok.pad_id]
        masked, labels = mask_tokens(cap_ids, cap_mask, self.cfg.text.vocab_size, rng,
                                     self.cfg.loss.mlm_probability, specials)
        return (pixels, np.stack([i for i, _ in ins]), np.stack([m for _, m in ins]), cap_ids, cap_mask,
                masked.astype(np.int32), labels)


def make_dataset(source: _BatchSource, columns: List[str], start_step: int = 0, num_workers: int = 1):
    """``mindspore.dataset.GeneratorDataset`` over ``source`` from ``start_step`` on, in order."""
    import mindspore.dataset as ds
    sampler = ds.SequentialSampler(start_index=start_step) if start_step else None
    return ds.GeneratorDataset(source, column_names=columns, sampler=sampler, shuffle=False if sampler is None
                               else None, num_parallel_workers=max(1, num_workers),
                               python_multiprocessing=num_workers > 1)


def describe_plan(source: _BatchSource, steps: int) -> str:
    counts: Dict[str, int] = {}
    for s in range(steps):
        t, _ = source.plan(s)
        counts[t] = counts.get(t, 0) + 1
    return json.dumps(counts)
