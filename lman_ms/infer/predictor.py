"""L-Man question answering: image + instruction -> answer text, one at a time or in batches.

    prompt = [BOS "{system} USER:" ; projected visual tokens ; "\\n{instruction} ASSISTANT:"]

The same template and preprocessing as stage-2 training (``lman_ms.data.conversation``, ``lman_ms.data.pipeline``);
the visual tokens are computed by one compiled cell per batch, then ``lman_ms.infer.generate.Generator`` decodes
with the static KV cache.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from lman_ms.config import LManConfig
from lman_ms.data.conversation import VicunaTemplate, prefix_ids, template_from_config
from lman_ms.data.pipeline import load_image
from lman_ms.data.tokenizers import fixed_length, load_clip_tokenizer, load_llm_tokenizer


class VisualPrefixCell(nn.Cell):
    """[embed(prefix) ; projection(adapter(ViT(image), instruction))] for a batch: (B, P + Nq, H)."""

    def __init__(self, model):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, pixel_values, instruction_ids, instruction_mask, prefix):
        visual = self.model.language_projection(self.model.visual_tokens(pixel_values, instruction_ids,
                                                                         instruction_mask))
        b = pixel_values.shape[0]
        pre = self.model.llm.embed_tokens(prefix).astype(visual.dtype)
        pre = ms.ops.broadcast_to(pre, (b, pre.shape[1], pre.shape[2]))
        return ms.ops.concat((pre, visual), axis=1).astype(ms.float32)


class Answer(str):
    """An answer: its text (it is a ``str``) plus ``task`` and ``structure``, the boxes / keypoints / labels read
    from it (``lman_ms.infer.structured``; the task is recognised from the wording when not given)."""

    def __new__(cls, text: str, task: Optional[str] = None):
        obj = super().__new__(cls, text)
        obj.task = task
        return obj

    @property
    def text(self) -> str:
        return str(self)

    @property
    def structure(self) -> Dict:
        from lman_ms.infer.structured import structure
        return structure(self.text, self.task)


class LManPredictor:
    """Answers about images from a stage-2 model.

        predictor = LManPredictor.from_pretrained("output/run/model")      # or a checkpoint folder / output dir
        predictor.answer(["person.jpg"], ["Find every face in the image."])

    ``LManPredictor(cfg, checkpoint)`` loads through the same loader (``lman_ms.models.loader``) as export, the
    server and the evaluation tools; ``model=`` wraps a model already in memory (LoRA already merged)."""

    def __init__(self, cfg: LManConfig, checkpoint: Optional[str] = None, model=None,
                 template: Optional[VicunaTemplate] = None):
        from lman_ms.infer.generate import Generator
        self.cfg = cfg
        if model is None:
            if not checkpoint:
                raise ValueError("LManPredictor needs a checkpoint or a model")
            from lman_ms.models.loader import load_model
            model, _ = load_model(checkpoint, cfg, stage=2)
        model.set_train(False)
        self.model = model
        d = cfg.data
        self.tok = load_llm_tokenizer(d.tokenizer_path)
        self.clip_tok = load_clip_tokenizer(d.clip_tokenizer_path or d.tokenizer_path)
        self.template = template or template_from_config(cfg)
        self.prefix = prefix_ids(self.tok, self.template)[None].astype(np.int32)
        self.prefix_cell = VisualPrefixCell(model)
        self.generator = Generator(model.llm)

    @classmethod
    def from_pretrained(cls, path: str, config: Optional[str] = None, overrides: Sequence[str] = ()) \
            -> "LManPredictor":
        """A model folder (``save_pretrained``), a training checkpoint folder, a training output dir (its newest
        checkpoint) or a ``.ckpt`` file; the config is the ``config.yaml`` beside the weights unless ``config``."""
        from lman_ms.models.loader import load_model_config
        cfg = load_model_config(path, config, overrides)
        return cls(cfg, path)

    def save_pretrained(self, folder: str) -> str:
        """Write a self-contained model folder: merged weights, config (paths relative to it), both tokenizers."""
        from lman_ms.models.loader import save_pretrained
        return save_pretrained(self.model, self.cfg, folder)

    def image_size(self, task: Optional[str] = None) -> int:
        s = self.cfg.data.tasks.get(task) if task else None
        return s.image_size if s is not None else self.cfg.vision.image_size

    def answer(self, images, instructions, tasks=None, boxes=None, **generation):
        """``answer("img.jpg", "Find every face.")`` -> one :class:`Answer`; lists of images and instructions ->
        a list, answered as one left-padded batch. Images are paths or (3, S, S) arrays already preprocessed; all
        images of one call must share one input size (the trainer's per-task sizes: group requests by task).
        ``generation``: :class:`~lman_ms.infer.generate.GenerationConfig` fields (its defaults otherwise)."""
        if isinstance(instructions, str):
            single = [None if tasks is None else tasks]
            return self.answer([images], [instructions], single, None if boxes is None else [boxes],
                               **generation)[0]
        tasks = list(tasks or [None] * len(images))
        boxes = list(boxes or [None] * len(images))
        pixels = np.stack([im if isinstance(im, np.ndarray) else load_image(im, self.image_size(t), b)
                           for im, t, b in zip(images, tasks, boxes)])
        ins = [fixed_length(self.clip_tok, text, self.cfg.adapter.num_instruction_tokens) for text in instructions]
        prefix = self.prefix_cell(Tensor(pixels), Tensor(np.stack([i for i, _ in ins])),
                                  Tensor(np.stack([m for _, m in ins])), Tensor(self.prefix)).asnumpy()
        prompts = [self.tok.encode(self.template.prompt(text), bos=False, eos=False) for text in instructions]
        from lman_ms.infer.generation_config import GenerationConfig
        generation.setdefault("max_new_tokens", GenerationConfig.max_new_tokens)
        generation.setdefault("eos_token_id", self.tok.eos_id)
        generation.setdefault("pad_token_id", self.tok.pad_id)
        # never ask for more tokens than the cache has room for after this batch's (bucketed) prompt: a long
        # instruction then shortens the answer budget instead of failing the whole batch
        length = prefix.shape[1] + max(len(p) for p in prompts)
        room = self.generator.room(length)
        if room < 1:
            raise ValueError(f"the prompt ({length} tokens with the visual prefix) fills the whole context "
                             f"({self.generator.max_cache_len} = llm.max_position_embeddings)")
        if generation["max_new_tokens"] > room:
            generation["max_new_tokens"] = room
        out = self.generator.generate(input_ids=prompts, prefix_embeds=prefix, **generation)
        return [Answer(self.tok.decode(seq).strip(), task) for seq, task in zip(out.sequences, tasks)]


def predict_records(predictor: LManPredictor, records: List[Dict], batch_size: int = 8, progress: bool = True,
                    **generation) -> List[Dict]:
    """``{"id", "answer"}`` for HumanIns-style records (``image_path``, ``instruction``, optional ``task``),
    batched per task so that each batch has one input size."""
    from tqdm import tqdm
    from lman_ms.data.pipeline import crop_box_of
    order: Dict[str, List[int]] = {}
    for i, r in enumerate(records):
        order.setdefault(r.get("task") or "", []).append(i)
    answers: Dict[int, str] = {}
    bar = tqdm(total=len(records), desc="answering", unit="req", disable=not progress)
    for task, idx in order.items():
        for start in range(0, len(idx), batch_size):
            chunk = [records[i] for i in idx[start:start + batch_size]]
            outs = predictor.answer([r["image_path"] for r in chunk], [r["instruction"] for r in chunk],
                                    [task or None] * len(chunk), [crop_box_of(r) for r in chunk], **generation)
            for i, a in zip(idx[start:start + batch_size], outs):
                answers[i] = a
            bar.update(len(chunk))
    bar.close()
    return [{"id": r["id"], "answer": answers[i]} for i, r in enumerate(records)]


def resolve_image(path: str, root: str = "") -> str:
    return path if os.path.isabs(path) or not root else os.path.join(root, path)
