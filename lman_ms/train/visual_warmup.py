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

With ``location`` (the demo's ``--warmup-location``) the localisation sources get where-heads too, on the query
outputs side by side: the cells of a 16 x 16 grid that person / face boxes cover (sigmoid cross-entropy on the
covered fraction) and, per joint, a distribution over the cells (cross-entropy against a Gaussian around it).
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
# Where-signals for the localisation tasks (docs/localisation.md): a warm-up of labels alone teaches the queries to
# pool where things are away (classification wants one pooled vector); these heads need it kept.
OCCUPANCY = ("pedestrian_detection", "face_detection")      # which cells of a grid the boxes cover
HEATMAP = ("pose_estimation",)                              # which cell each joint is in
LOCATION_TASKS = OCCUPANCY + HEATMAP
GRID = 16                                                   # cells per side of the location targets
LOCATION_WEIGHT = 16       # a location source's share of the steps counts as 16 labels' (a pose's joints)


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

    @property
    def kind(self) -> str:
        if self.task in OCCUPANCY:
            return "occupancy"
        if self.task in HEATMAP:
            return "heatmap"
        return "multi" if self.multi_label else "single"

    @property
    def flat(self) -> bool:
        """Whether its head reads the query outputs side by side (anything about where) or their mean."""
        return self.kind != "single"

    @property
    def outputs(self) -> int:
        return self.y.shape[1] if self.y.ndim == 2 else len(self.names)


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


def _coverage(boxes, width: float, height: float, grid: int = GRID) -> np.ndarray:
    """(grid * grid,) the fraction of each cell that the union of ``boxes`` (pixels) covers, on a fine raster."""
    fine = 4 * grid
    mask = np.zeros((fine, fine), np.float32)
    for x1, y1, x2, y2 in boxes:
        c1, c2 = int(np.floor(x1 / width * fine)), int(np.ceil(x2 / width * fine))
        r1, r2 = int(np.floor(y1 / height * fine)), int(np.ceil(y2 / height * fine))
        mask[max(0, r1):min(fine, r2), max(0, c1):min(fine, c2)] = 1.0
    return mask.reshape(grid, 4, grid, 4).mean((1, 3)).reshape(-1)


def _joint_maps(people, width: float, height: float, grid: int = GRID, sigma: float = 0.75) -> np.ndarray:
    """(K * grid * grid,) per joint a Gaussian over the cells around it (sigma in cells), normalised to sum 1;
    all zeros for a joint not labelled. Every person of the picture adds to the same maps."""
    kp = np.asarray(people, np.float64)                                     # (P, K, 3)
    centres = (np.arange(grid) + 0.5)
    maps = np.zeros((kp.shape[1], grid, grid), np.float64)
    for p in kp:
        for k, (x, y, v) in enumerate(p):
            if v <= 0:
                continue
            gx, gy = x / width * grid, y / height * grid
            maps[k] += np.exp(-((centres[None, :] - gx) ** 2 + (centres[:, None] - gy) ** 2) / (2 * sigma ** 2))
    total = maps.sum((1, 2), keepdims=True)
    maps = np.where(total > 0, maps / np.maximum(total, 1e-12), 0.0)
    return maps.reshape(-1).astype(np.float32)


def load_location(humanins_dir: str, split: str, image_size: int, limit: Optional[int] = None
                  ) -> Dict[str, LabelledSet]:
    """One entry per source of the localisation tasks, one row per whole picture: ``y`` is the cell coverage of
    its boxes (detection) or its joint heatmaps (pose) on a GRID x GRID grid of the picture."""
    from lman_ms.data.pipeline import RecordSet, load_image
    records = RecordSet.load(humanins_dir, split, tasks=list(LOCATION_TASKS)).records
    by_source: Dict[str, Dict[str, dict]] = {}
    for r in records:
        by_source.setdefault(r["dataset"], {}).setdefault(r["image_path"], r)
    out = {}
    for ds, pics in sorted(by_source.items()):
        rows = list(pics.values())[:limit]
        task = rows[0]["task"]
        if task in HEATMAP:
            names = list(rows[0]["target"]["keypoint_names"])
            ys = [_joint_maps(r["target"]["keypoints"], r["width"], r["height"]) for r in rows]
        else:
            names = [f"cell{i}" for i in range(GRID * GRID)]
            ys = [_coverage(r["target"]["boxes"], r["width"], r["height"]) for r in rows]
        images = np.stack([load_image(r["image_path"], image_size) for r in rows])
        out[ds] = LabelledSet(ds, task, images.astype(np.float32), np.stack(ys).astype(np.float32), names)
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
        self.index = {name: k for k, name in enumerate(sources)}       # which head a source trains
        self.flat = [s.flat for s in sources.values()]
        self.heads = nn.CellList([nn.Dense(a.hidden_size * (a.num_query_tokens if flat else 1), s.outputs)
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
    """Which source each step trains: in proportion to its head's outputs (26 attributes get 3.7 times the steps
    of a 7-way label), interleaved so every source is trained all along. Measured on the demo's data
    (docs/decisions.md): against shares by the square root, attributes mA 0.771 -> 0.801 at the same 1000 steps, and
    expression and action learn what they did in fewer steps (0.975 / 0.417 -> 0.967 / 0.425)."""
    weights = np.asarray([len(s.names) if s.kind in ("single", "multi") else LOCATION_WEIGHT for s in sources],
                         dtype=np.float64)
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
        self.net, self.head, self.kind = net, head, source.kind
        self.multi_label = source.multi_label
        if self.kind == "heatmap":
            self.joints = len(source.names)
        if self.multi_label:
            ratio = source.y.mean(0)
            self.weight = Tensor(np.exp(ratio)[None].astype(np.float32))
            self.pos_weight = Tensor((np.exp(1 - ratio) / np.exp(ratio))[None].astype(np.float32))

    def construct(self, x, y):
        logits = self.net(x, self.head)
        if self.kind == "occupancy":
            return ops.binary_cross_entropy_with_logits(logits, y, ops.ones_like(logits), ops.ones_like(logits))
        if self.kind == "heatmap":     # cross-entropy of each joint's cell distribution against its Gaussian
            b = logits.shape[0]
            logp = ops.log_softmax(logits.reshape(b, self.joints, -1), -1)
            t = y.reshape(b, self.joints, -1)
            return -(t * logp).sum() / ops.maximum(t.sum(), 1.0)
        if self.multi_label:
            return ops.binary_cross_entropy_with_logits(logits, y, ops.broadcast_to(self.weight, logits.shape),
                                                        ops.broadcast_to(self.pos_weight, logits.shape))
        return ops.cross_entropy(logits, y)


def evaluate(net: VisualClassifier, sources: Dict[str, LabelledSet], batch: int = 64) -> Dict[str, float]:
    """Accuracy (single label) or mA (attributes) per source."""
    from lman_ms.eval.metrics.attributes import attribute_metrics
    net.set_train(False)
    out = {}
    for name, s in sources.items():
        k = net.index[name]
        logits = np.concatenate([net(Tensor(s.images[i:i + batch]), k).asnumpy()
                                 for i in range(0, len(s.images), batch)])
        if s.kind == "occupancy":      # IoU of the covered cells (coverage > 1/2), over the whole set
            pred, true = logits > 0, s.y > 0.5
            out[s.dataset] = float((pred & true).sum() / max(1, (pred | true).sum()))
        elif s.kind == "heatmap":      # joints whose most likely cell is within one cell of the true one
            n, j = len(logits), len(s.names)
            p = logits.reshape(n, j, -1).argmax(-1)
            t = s.y.reshape(n, j, -1)
            has, tc = t.sum(-1) > 0, t.argmax(-1)
            near = (np.abs(p // GRID - tc // GRID) <= 1) & (np.abs(p % GRID - tc % GRID) <= 1)
            out[s.dataset] = float(near[has].mean()) if has.any() else 0.0
        else:
            out[s.dataset] = (attribute_metrics(s.y.astype(np.int64), (logits > 0).astype(np.int64))["mA"]
                              if s.multi_label else float((logits.argmax(-1) == s.y).mean()))
    net.set_train(True)
    return out


def _load_split(humanins_dir: str, split: str, image_size: int, location: bool) -> Dict[str, LabelledSet]:
    """The labelled sources (and with ``location`` the localisation ones) that have records in ``split``."""
    out: Dict[str, LabelledSet] = {}
    for load in (load_labelled, load_location) if location else (load_labelled,):
        try:
            out.update(load(humanins_dir, split, image_size))
        except ValueError as e:      # no records of those tasks in this split
            if not str(e).startswith(f"no {split} records"):
                raise
    if not out:
        raise ValueError(f"{humanins_dir}: no {split} records of "
                         f"{SINGLE_LABEL + MULTI_LABEL + (LOCATION_TASKS if location else ())} to warm up on")
    return out


def warmup_visual(cfg: LManConfig, humanins_dir: str, out_ckpt: str, steps: int, learning_rate: float = 1e-3,
                  batch_size: int = 32, seed: int = 0, log_steps: int = 50, location: bool = False,
                  sources: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    """Train ViT + adapter with one head per labelled source (steps shared by :func:`source_schedule`), and save
    them to ``out_ckpt`` (written to a temporary name and renamed: a crash never leaves a half-written file).
    ``location`` adds a where-head per source of the localisation tasks (box coverage or joint heatmaps on a grid,
    read from the query outputs side by side); ``sources`` keeps only those datasets. Returns the held-out scores
    before and after, and the steps each source was trained."""
    from lman_ms.train.optim import build_optimizer
    if not out_ckpt.endswith(".ckpt"):
        raise ValueError(f"{out_ckpt}: the warm-up checkpoint must be a .ckpt file")
    image_size = cfg.vision.image_size
    train = _load_split(humanins_dir, "train", image_size, location)
    if sources:
        unknown = sorted(set(sources) - set(train))
        if unknown:
            raise ValueError(f"{humanins_dir}: no training records of the sources {unknown} to warm up on; "
                             f"there are {sorted(train)}")
        train = {k: v for k, v in train.items() if k in sources}
    if not train:
        raise ValueError(f"{humanins_dir}: no training records of {SINGLE_LABEL + MULTI_LABEL} to warm up on")
    try:
        test = {k: v for k, v in _load_split(humanins_dir, "test", image_size, location).items() if k in train}
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
