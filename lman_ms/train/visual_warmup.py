"""Supervised warm-up of the visual path (ViT + query adapter) on the labelled HumanIns training pictures.

The paper starts from CLIP ViT-L/14, a vision encoder that already tells faces, actions and clothes apart. The
tiny demo has no such encoder at its size, and measured on SynthHuman (docs/demo.md) a stage-2
LLM learns to read the image within 80 steps once the visual tokens carry the label, but a visual path trained
from scratch through the LLM's answer loss (or through stage 1's contrastive loss on ~2k pictures) does not get
there in the demo's budget. This warm-up stands in for the encoder's pretraining, as an ImageNet-pretrained
backbone would: one classifier per labelled source on the adapter's query outputs (their mean with cross-entropy
for expression and action labels; side by side with DeepMAR's weighted sigmoid cross-entropy for pedestrian
attributes), train split only. The heads are thrown away; the ViT and adapter weights are saved under the model's
own parameter names, so ``train.init_checkpoint`` of stage 1 loads them.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from lman_ms.config import LManConfig, TrainConfig

logger = logging.getLogger("lman_ms.train")

SINGLE_LABEL = ("expression_recognition", "action_recognition")
MULTI_LABEL = ("pedestrian_attribute",)


@dataclass
class LabelledSet:
    """The pictures of one source dataset with their labels: ``y`` (N,) class ids or (N, C) 0/1 attributes."""
    dataset: str
    task: str
    images: np.ndarray
    y: np.ndarray
    names: List[str]

    @property
    def multi_label(self) -> bool:
        return self.task in MULTI_LABEL


def load_labelled(humanins_dir: str, split: str, image_size: int, limit: Optional[int] = None
                  ) -> Dict[str, LabelledSet]:
    """One entry per source dataset of the classification tasks, one row per picture (its records share it)."""
    from lman_ms.data.pipeline import RecordSet, crop_box_of, load_image
    records = RecordSet.load(humanins_dir, split, tasks=list(SINGLE_LABEL + MULTI_LABEL)).records
    by_source: Dict[str, Dict[str, dict]] = {}
    for r in records:
        by_source.setdefault(r["dataset"], {}).setdefault(r["image_path"] + repr(crop_box_of(r)), r)
    out = {}
    for ds, pics in sorted(by_source.items()):
        rows = list(pics.values())[:limit]
        task, t = rows[0]["task"], rows[0]["target"]
        names = list(t["attribute_names"] if task in MULTI_LABEL else t["label_names"])
        ys = [r["target"]["attributes"] if task in MULTI_LABEL else r["target"]["label"] for r in rows]
        images = np.stack([load_image(r["image_path"], image_size, crop_box_of(r)) for r in rows])
        dtype = np.float32 if task in MULTI_LABEL else np.int32
        out[ds] = LabelledSet(ds, task, images.astype(np.float32), np.asarray(ys, dtype), names)
    return out


class VisualPath(nn.Cell):
    """The ViT and the adapter alone, under the names they have in ``LMan`` (``vision_model.*``, ``adapter.*``):
    the warm-up of a 7B config does not build the LLM it does not train."""

    def __init__(self, config: LManConfig):
        super().__init__()
        from lman_ms.models.adapter import QueryAdapter
        from lman_ms.models.vision import CLIPVisionEncoder
        self.config = config
        self.vision_model = CLIPVisionEncoder(config.vision)      # the order LMan builds them in: same init
        self.adapter = QueryAdapter(config.adapter, config.text)


class VisualClassifier(nn.Cell):
    """ViT -> adapter (empty instruction) -> one linear head per source: on the mean of the query outputs for a
    single label (expression, action), on the query outputs side by side for attributes.

    Measured on the demo's data (docs/decisions.md): attributes are where they are (a hat on top, boots at the
    bottom), and a head on the mean lets the queries stay copies of one pooled vector (held-out mA 0.56 vs 0.61
    side by side at 200 steps); but for one label per picture the mean head is what the LLM then reads best
    (expression 0.92 vs 0.38 after the same 300 stage-2 steps), as every query carries the label."""

    def __init__(self, model: VisualPath, sources: Dict[str, LabelledSet]):
        super().__init__(auto_prefix=False)
        self.vision_model, self.adapter = model.vision_model, model.adapter
        a = model.config.adapter
        self.flat = [s.multi_label for s in sources.values()]
        self.heads = nn.CellList([nn.Dense(a.hidden_size * (a.num_query_tokens if flat else 1), len(s.names))
                                  for flat, s in zip(self.flat, sources.values())])
        n = a.num_instruction_tokens
        self.no_ids, self.no_mask = Tensor(np.zeros((1, n), np.int32)), Tensor(np.zeros((1, n), np.float32))

    def tokens(self, pixel_values):
        b = pixel_values.shape[0]
        ids = ops.broadcast_to(self.no_ids, (b, self.no_ids.shape[1]))
        mask = ops.broadcast_to(self.no_mask, (b, self.no_mask.shape[1]))
        return self.adapter(self.vision_model(pixel_values), ids, mask)

    def construct(self, pixel_values, head: int):
        tokens = self.tokens(pixel_values)
        if self.flat[head]:
            return self.heads[head](tokens.reshape(tokens.shape[0], -1))
        return self.heads[head](tokens.mean(1))


def source_schedule(sources: List[LabelledSet], steps: int) -> List[int]:
    """Which source each step trains: in proportion to the square root of its head's outputs (26 attributes get
    about twice the steps of a 7-way label), interleaved so every source is trained all along."""
    weights = np.sqrt([len(s.names) for s in sources], dtype=np.float64)
    credit, order = np.zeros(len(sources)), []
    for _ in range(steps):     # smooth weighted round robin: deterministic, no source starves
        credit += weights
        k = int(np.argmax(credit))
        credit[k] -= weights.sum()
        order.append(k)
    return order


class _Loss(nn.Cell):
    """Cross-entropy, or for attributes DeepMAR's weighted sigmoid cross-entropy (Li et al., 2015): positives of
    attribute j weigh exp(1 - p_j), negatives exp(p_j), p_j its positive ratio. Unweighted, the rare attributes
    are learned as "always absent", which is exactly what mA (the mean of positive and negative recall) punishes."""

    def __init__(self, net: VisualClassifier, head: int, source: LabelledSet):
        super().__init__(auto_prefix=False)
        self.net, self.head, self.multi_label = net, head, source.multi_label
        if self.multi_label:
            ratio = source.y.mean(0)
            self.weight = Tensor(np.exp(ratio)[None].astype(np.float32))
            self.pos_weight = Tensor((np.exp(1 - ratio) / np.exp(ratio))[None].astype(np.float32))

    def construct(self, x, y):
        logits = self.net(x, self.head)
        if self.multi_label:
            return ops.binary_cross_entropy_with_logits(logits, y, ops.broadcast_to(self.weight, logits.shape),
                                                        ops.broadcast_to(self.pos_weight, logits.shape))
        return ops.cross_entropy(logits, y)


def evaluate(net: VisualClassifier, sources: Dict[str, LabelledSet], batch: int = 64) -> Dict[str, float]:
    """Accuracy (single label) or mA (attributes) per source."""
    from lman_ms.eval.metrics.attributes import attribute_metrics
    net.set_train(False)
    out = {}
    for k, s in enumerate(sources.values()):
        logits = np.concatenate([net(Tensor(s.images[i:i + batch]), k).asnumpy()
                                 for i in range(0, len(s.images), batch)])
        out[s.dataset] = (attribute_metrics(s.y.astype(np.int64), (logits > 0).astype(np.int64))["mA"]
                          if s.multi_label else float((logits.argmax(-1) == s.y).mean()))
    net.set_train(True)
    return out


def warmup_visual(cfg: LManConfig, humanins_dir: str, out_ckpt: str, steps: int, learning_rate: float = 1e-3,
                  batch_size: int = 32, seed: int = 0, log_steps: int = 50) -> Dict[str, Dict[str, float]]:
    """Train ViT + adapter with one head per labelled source (steps shared by :func:`source_schedule`), and save
    them to ``out_ckpt`` (written to a temporary name and renamed: a crash never leaves a half-written file).
    Returns the held-out scores before and after, and the steps each source was trained."""
    from lman_ms.train.optim import build_optimizer
    if not out_ckpt.endswith(".ckpt"):
        raise ValueError(f"{out_ckpt}: the warm-up checkpoint must be a .ckpt file")
    image_size = cfg.vision.image_size
    train = load_labelled(humanins_dir, "train", image_size)
    if not train:
        raise ValueError(f"{humanins_dir}: no training records of {SINGLE_LABEL + MULTI_LABEL} to warm up on")
    try:
        test = {k: v for k, v in load_labelled(humanins_dir, "test", image_size).items() if k in train}
    except ValueError:          # no held-out split: train, but report no scores
        test = {}
    ms.set_seed(seed)
    model = VisualPath(cfg)
    net = VisualClassifier(model, train)
    tc = TrainConfig(learning_rate=learning_rate, min_learning_rate=0.0, warmup_steps=min(30, steps // 10 + 1),
                     max_steps=steps, weight_decay=0.01)
    optimizer, _ = build_optimizer(net.trainable_params(), tc)
    step_fns = []
    for k, s in enumerate(train.values()):
        grad = ms.value_and_grad(_Loss(net, k, s), None, optimizer.parameters)

        def one(x, y, grad=grad):
            loss, g = grad(x, y)
            optimizer(g, 1.0)         # build_optimizer's AdamW clips to this global norm in its own update
            return loss
        step_fns.append(ms.jit(one))
    before = evaluate(net, test) if test else {}
    net.set_train(True)           # the norms train on the CPU LayerNorm kernels (models/layer_norm_kernel.py)
    rng = np.random.default_rng(seed)
    sources = list(train.values())
    schedule = source_schedule(sources, steps)
    t0, window = time.perf_counter(), []
    first = t0
    trained = {s.dataset: 0 for s in sources}
    for step in range(1, steps + 1):
        k = schedule[step - 1]
        s = sources[k]
        trained[s.dataset] += 1
        idx = rng.integers(0, len(s.images), batch_size)
        window.append(float(step_fns[k](Tensor(s.images[idx]), Tensor(s.y[idx])).asnumpy()))
        if step % log_steps == 0 or step == steps:
            now = time.perf_counter()
            rate = len(window) / (now - t0)          # this window only: the first one also compiled the graphs
            logger.info("visual warm-up step %d/%d loss %.4f %.1f samples/s eta %ds", step, steps,
                        float(np.mean(window)), rate * batch_size, int((steps - step) / rate))
            t0, window = now, []
    after = evaluate(net, test) if test else {}
    logger.info("visual warm-up: %d steps in %.0f s (per source %s); held-out scores before %s, after %s", steps,
                time.perf_counter() - first, trained, before, after)
    os.makedirs(os.path.dirname(os.path.abspath(out_ckpt)), exist_ok=True)
    tmp = out_ckpt[: -len(".ckpt")] + ".partial.ckpt"   # save_checkpoint appends .ckpt to any other name
    ms.save_checkpoint(model, tmp)
    os.replace(tmp, out_ckpt)
    return {"before": before, "after": after, "steps_per_source": trained}
