"""Location probes: how well can a linear (ridge) or small-MLP read-out recover *where* a person is from each
point of the visual path? (``docs/localisation.md``; CLI ``tools/probe_location.py``).

Feature sites, in the order the image flows through the model (``LMan`` shapes, Nq queries, D widths):

* ``vit_patches``: the ViT's last hidden state without the class token, (B, N_patches, Dv), site (a);
* ``vit_for_ca{k}``: the hidden state V_2k that adapter layer k's cross-attention reads (eq. 1-2; with
  ``multi_grained`` off, the last one for every k), with its class token, (B, 1 + N_patches, Dv), site (b);
* ``adapter_queries``: the adapter's query outputs, (B, Nq, D), site (c);
* ``projected``: ``language_projection`` of those, the visual tokens the LLM reads, (B, Nq, H), site (d).

Every site is flattened in token order (a token's index is where it sits in the grid, or which query it is, so
a linear read-out can use it), then reduced to the *same* number of features for every site: principal components
fitted on the training split only. The probe budget is thus identical across sites and checkpoints: same inputs
(pictures, instruction), same feature count, same fitting (ridge with its penalty chosen by k-fold cross-validation
on the training split, or a one-hidden-layer MLP with fixed steps), same train / held-out split.

Targets are regressions of normalised coordinates (x / width, y / height) of ONE person per picture, the largest:
regression, not heatmap-cell classification, because its error is read directly in the task's own metrics (box
IoU, PCKh), and because at the demo's 8 x 8 patch grid a cell classification would cap the resolution at 1/8 of
the picture, which is coarser than the IoU >= 0.5 and PCKh@0.5 tolerances it is meant to explain. Scores:

* boxes: mean IoU and the hit rate IoU >= 0.5 (what AP50 counts as a true positive);
* joints: PCK@0.5 of the head size, as MPII's PCKh (0.6 x the head-box diagonal; the held-out records carry
  ``target.head_boxes``);
* chance: the same scores for predicting the training mean for every picture.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SC_BIAS = 0.6          # MPII: head size = 0.6 x head-box diagonal (lman_ms/eval/metrics/pose.py)
SITE_ORDER = ("vit_patches", "vit_for_ca", "adapter_queries", "projected")
SITE_LABELS = {"vit_patches": "(a) ViT patch tokens, last layer",
               "vit_for_ca": "(b) ViT state read by adapter CA layer",
               "adapter_queries": "(c) adapter query outputs",
               "projected": "(d) projected visual tokens"}


# ---- targets ---------------------------------------------------------------------------------------------------------
@dataclass
class LocationSet:
    """Pictures with one location target each. ``y`` (N, T) normalised coordinates (boxes: x1 y1 x2 y2; joints:
    x y per joint), ``labelled`` (N, T // 2 or 1) which joints count, ``size`` (N, 2) width and height in pixels,
    ``ref`` (N,) the PCK reference length in pixels (joints only)."""
    name: str
    kind: str                               # "box" or "joints"
    images: np.ndarray                      # (N, 3, S, S) float32
    instruction_ids: np.ndarray             # (N, T_ins) int32
    instruction_mask: np.ndarray            # (N, T_ins) float32
    y: np.ndarray
    labelled: np.ndarray
    size: np.ndarray
    ref: Optional[np.ndarray] = None
    ids: List[str] = field(default_factory=list)


def largest_box(boxes: Sequence[Sequence[float]]) -> List[float]:
    """The box with the largest area: the one person a picture's probe target is about."""
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


def _box_target(r: dict) -> Optional[Tuple[np.ndarray, np.ndarray, Optional[float]]]:
    boxes = r["target"].get("boxes") or []
    if not boxes:
        return None
    x1, y1, x2, y2 = largest_box(boxes)
    w, h = float(r["width"]), float(r["height"])
    return np.array([x1 / w, y1 / h, x2 / w, y2 / h], np.float64), np.ones(1, bool), None


def _joint_target(r: dict) -> Optional[Tuple[np.ndarray, np.ndarray, Optional[float]]]:
    people = r["target"].get("keypoints") or []
    if not people:
        return None
    kp = np.asarray(people, np.float64)                                 # (P, K, 3)
    heads = r["target"].get("head_boxes")
    spans = [np.ptp(p[p[:, 2] > 0, :2], axis=0).prod() if (p[:, 2] > 0).any() else 0.0 for p in kp]
    i = int(np.argmax(spans))                                           # the largest person, as for boxes
    p = kp[i]
    w, h = float(r["width"]), float(r["height"])
    xy = (p[:, :2] / np.array([w, h])).reshape(-1)
    ref = None
    if heads:
        hb = np.asarray(heads[i], np.float64)
        ref = SC_BIAS * float(np.linalg.norm(hb[2:] - hb[:2]))
    return xy, p[:, 2] > 0, ref


TARGETS = {  # target name -> (HumanIns task, kind, how a record becomes a target)
    "person_boxes": ("pedestrian_detection", "box", _box_target),
    "face_boxes": ("face_detection", "box", _box_target),
    "joints": ("pose_estimation", "joints", _joint_target),
}


def load_location_set(humanins_dir: str, split: str, target: str, image_size: int, instruction_length: int,
                      tokenizer=None, limit: Optional[int] = None) -> LocationSet:
    """One row per picture of ``target``'s task (the first record of a picture gives its instruction), tokenised
    to the adapter's ``instruction_length`` by ``tokenizer``; None: an empty instruction (all padding, what the
    visual warm-up trains with)."""
    from lman_ms.data.pipeline import RecordSet, load_image
    from lman_ms.data.tokenizers import fixed_length
    if target not in TARGETS:
        raise ValueError(f"unknown probe target {target!r}; known: {sorted(TARGETS)}")
    task, kind, make = TARGETS[target]
    rows, seen = [], set()
    for r in RecordSet.load(humanins_dir, split, tasks=[task]).records:
        if r["image_path"] in seen:
            continue
        seen.add(r["image_path"])
        t = make(r)
        if t is not None:
            rows.append((r, t))
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise ValueError(f"{humanins_dir}: no {split} records of {task} with a {target} target")
    refs = [t[2] for _, t in rows]
    if kind == "joints" and any(x is None for x in refs):
        missing = next(r["id"] for (r, t) in rows if t[2] is None)
        if split != "train":
            raise ValueError(f"{humanins_dir}: {split} record {missing} has no target.head_boxes (PCKh needs them)")
        refs = [0.0 if x is None else x for x in refs]
    ids = np.zeros((len(rows), instruction_length), np.int32)
    mask = np.zeros((len(rows), instruction_length), np.float32)
    if tokenizer is not None:
        for i, (r, _) in enumerate(rows):
            ids[i], mask[i] = fixed_length(tokenizer, r["instruction"], instruction_length)
    return LocationSet(
        name=target, kind=kind,
        images=np.stack([load_image(r["image_path"], image_size) for r, _ in rows]).astype(np.float32),
        instruction_ids=ids, instruction_mask=mask,
        y=np.stack([t[0] for _, t in rows]), labelled=np.stack([t[1] for _, t in rows]),
        size=np.array([[r["width"], r["height"]] for r, _ in rows], np.float64),
        ref=np.asarray(refs, np.float64) if kind == "joints" else None, ids=[r["id"] for r, _ in rows])


# ---- features --------------------------------------------------------------------------------------------------------
def feature_sites(model, images: np.ndarray, instruction_ids: np.ndarray, instruction_mask: np.ndarray,
                  batch_size: int = 32) -> Dict[str, np.ndarray]:
    """Every site's features, flattened in token order: ``{site: (N, F_site)}``. ``model`` needs
    ``vision_model`` and ``adapter`` (an ``LMan`` or the warm-up's ``VisualPath``); ``projected`` is there only
    when it has a ``language_projection`` (stage 2). Sites (b) are named ``vit_for_ca1`` .. ``vit_for_ca{m}``."""
    from mindspore import Tensor
    out: Dict[str, List[np.ndarray]] = {}
    projection = getattr(model, "language_projection", None)
    for i in range(0, len(images), batch_size):
        states = model.vision_model(Tensor(images[i:i + batch_size]))
        queries = model.adapter(states, Tensor(instruction_ids[i:i + batch_size]),
                                Tensor(instruction_mask[i:i + batch_size]))
        got = {"vit_patches": states[-1][:, 1:]}
        for k in range(len(model.adapter.layers)):
            got[f"vit_for_ca{k + 1}"] = states[model.adapter.vision_index(k, len(states))]
        got["adapter_queries"] = queries
        if projection is not None:
            got["projected"] = projection(queries)
        for name, value in got.items():
            v = value.asnumpy()
            out.setdefault(name, []).append(v.reshape(v.shape[0], -1).astype(np.float64))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def token_position_r2(model, images: np.ndarray, batch_size: int = 32) -> Dict[str, Dict[str, float]]:
    """How well one patch token's *content* tells where it is, per ViT state the adapter reads (V_0 and each V_2k):
    a ridge from the token (alone, index not given) to its grid column and row, fitted on the first half of the
    pictures and scored (R^2) on the second. The flattened probes above see the token's index; a cross-attention,
    which averages contents, sees only this."""
    from mindspore import Tensor
    layers = [0] + [model.adapter.vision_index(k, len(model.vision_model.blocks) + 1)
                    for k in range(len(model.adapter.layers))]
    states = {l: [] for l in layers}
    for i in range(0, len(images), batch_size):
        hidden = model.vision_model(Tensor(images[i:i + batch_size]))
        for l in layers:
            states[l].append(hidden[l].asnumpy()[:, 1:].astype(np.float64))
    out = {}
    for l in layers:
        x = np.concatenate(states[l])                                        # (N, P, D)
        n, p, _ = x.shape
        gh = int(round(np.sqrt(p)))
        gw = p // gh
        rows, cols = np.divmod(np.arange(p), gw)
        where = np.stack([cols, rows], 1).astype(np.float64)
        half = n // 2
        xtr, xte = x[:half].reshape(-1, x.shape[-1]), x[half:].reshape(-1, x.shape[-1])
        ytr, yte = np.tile(where, (half, 1)), np.tile(where, (n - half, 1))
        w, b = _ridge_solve(xtr, ytr, 1e-2)
        pred = xte @ w + b
        r2 = 1 - ((pred - yte) ** 2).sum(0) / ((yte - yte.mean(0)) ** 2).sum(0)
        out[f"V_{l}"] = {"r2_x": float(r2[0]), "r2_y": float(r2[1])}
    return out


def format_position_table(results: Dict[str, Dict[str, dict]]) -> str:
    """Markdown: rows = ViT states, columns = checkpoints; each cell R^2 of (column, row) from one token."""
    labels = [c for c in results if "token_position" in results[c]]
    if not labels:
        return ""
    states = list(results[labels[0]]["token_position"])
    lines = ["| ViT state (one patch token's content) | " + " | ".join(f"R2 x / y @ {c}" for c in labels) + " |",
             "|" + "---|" * (len(labels) + 1)]
    for st in states:
        cells = [results[c]["token_position"].get(st) for c in labels]
        lines.append(f"| {st} | " + " | ".join("n/a" if v is None else f"{v['r2_x']:.2f} / {v['r2_y']:.2f}"
                                              for v in cells) + " |")
    return "\n".join(lines)


def site_order(names) -> List[str]:
    """Sites in the order the image flows through them (a, b1..bm, c, d); other names after them, by name."""
    def key(n):
        base = "vit_for_ca" if n.startswith("vit_for_ca") else n
        rank = SITE_ORDER.index(base) if base in SITE_ORDER else len(SITE_ORDER)
        return rank, int(n[len("vit_for_ca"):]) if base == "vit_for_ca" else 0, n
    return sorted(names, key=key)


class Reducer:
    """Standardise (training statistics) and keep the first ``dim`` principal components: the probe's fixed
    feature budget. Fitted on the training split only."""

    def __init__(self, train: np.ndarray, dim: int):
        self.mean = train.mean(0)
        self.scale = train.std(0) + 1e-8
        z = (train - self.mean) / self.scale
        _, _, vt = np.linalg.svd(z, full_matrices=False)
        self.components = vt[: min(dim, vt.shape[0])].T               # (F, dim)
        self.dim = dim

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mean) / self.scale) @ self.components
        if z.shape[1] < self.dim:   # fewer samples or features than the budget: pad, so every site has `dim`
            z = np.concatenate([z, np.zeros((len(z), self.dim - z.shape[1]))], 1)
        return z


# ---- models ----------------------------------------------------------------------------------------------------------
def checkpoint_kind(path: str) -> str:
    """``"stage2"`` (has the LLM), ``"stage1"`` (has the text tower / stage-1 heads) or ``"visual_path"`` (the
    visual warm-up's ViT + adapter only), from the checkpoint's tensor names."""
    from lman_ms.models.loader import _read, resolve_checkpoint
    names = list(_read(resolve_checkpoint(path)))
    if any(n.startswith("llm.") for n in names):
        return "stage2"
    if any(n.startswith(("text_model.", "vision_proj.", "vmlm_head.")) for n in names):
        return "stage1"
    if any(n.startswith("vision_model.") for n in names):
        return "visual_path"
    raise ValueError(f"{resolve_checkpoint(path)}: holds no vision_model.* tensors; not an L-Man checkpoint")


def load_probe_model(path: Optional[str], config: Optional[str] = None, seed: int = 0):
    """``(model, cfg, kind)`` for probing: ``path`` None builds a randomly initialised stage-2 model from
    ``config`` (seeded: the floor); otherwise the checkpoint loads strictly through :mod:`lman_ms.models.loader`
    as the stage it was trained as (a stage-1 or warm-up model has no ``language_projection`` yet: no site d)."""
    from lman_ms.models.loader import load_model, load_model_config, load_weights
    if path is None:
        import mindspore as ms
        from lman_ms.models.lman import LMan
        if not config:
            raise ValueError("a randomly initialised model needs a config (--config)")
        cfg = load_model_config(config, config)      # a model folder's config names its tokenizers relatively
        ms.set_seed(seed)
        model = LMan(cfg, stage=2)
        model.set_train(False)
        return model, cfg, "random"
    kind = checkpoint_kind(path)
    if kind == "visual_path":
        from lman_ms.train.visual_warmup import VisualPath
        cfg = load_model_config(path, config)
        model = VisualPath(cfg)
        load_weights(model, path, strict=True)
        model.set_train(False)
        return model, cfg, kind
    model, cfg = load_model(path, stage=2 if kind == "stage2" else 1, config=config)
    return model, cfg, kind


# ---- fitting ---------------------------------------------------------------------------------------------------------
def _ridge_solve(x, y, alpha):
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return w, ym - xm @ w


def fit_ridge(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0,
              alphas: Sequence[float] = tuple(10.0 ** np.arange(-2, 5.5, 0.5))):
    """Ridge regression, its penalty picked by ``folds``-fold cross-validation on (x, y). Returns predict(x)."""
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(x)) % folds
    scale = np.trace(x.T @ x) / max(len(x), 1) / x.shape[1]        # penalties relative to the feature scale
    errors = []
    for a in alphas:
        err = 0.0
        for f in range(folds):
            tr, va = fold != f, fold == f
            w, b = _ridge_solve(x[tr], y[tr], a * scale)
            err += float(((x[va] @ w + b - y[va]) ** 2).sum())
        errors.append(err)
    w, b = _ridge_solve(x, y, alphas[int(np.argmin(errors))] * scale)
    return lambda z: z @ w + b


def fit_mlp(x: np.ndarray, y: np.ndarray, hidden: int = 256, steps: int = 2000, lr: float = 1e-3,
            weight_decay: float = 1e-3, seed: int = 0):
    """One hidden ReLU layer, full-batch Adam for a fixed number of steps (numpy: deterministic, no framework
    state shared with the model under probe). Returns predict(x)."""
    rng = np.random.default_rng(seed)
    xs = x.std() + 1e-8
    ym, ys = y.mean(0), y.std(0) + 1e-8
    x, t = x / xs, (y - ym) / ys
    params = [rng.normal(0, np.sqrt(2.0 / x.shape[1]), (x.shape[1], hidden)), np.zeros(hidden),
              rng.normal(0, np.sqrt(1.0 / hidden), (hidden, y.shape[1])), np.zeros(y.shape[1])]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for step in range(1, steps + 1):
        w1, b1, w2, b2 = params
        h = np.maximum(x @ w1 + b1, 0)
        d = 2 * (h @ w2 + b2 - t) / t.size
        dh = (d @ w2.T) * (h > 0)
        grads = [x.T @ dh + weight_decay * w1, dh.sum(0), h.T @ d + weight_decay * w2, d.sum(0)]
        for p, g, mi, vi in zip(params, grads, m, v):
            mi[:] = 0.9 * mi + 0.1 * g
            vi[:] = 0.999 * vi + 0.001 * g * g
            p -= lr * (mi / (1 - 0.9 ** step)) / (np.sqrt(vi / (1 - 0.999 ** step)) + 1e-8)
    w1, b1, w2, b2 = params
    return lambda z: (np.maximum((z / xs) @ w1 + b1, 0) @ w2 + b2) * ys + ym


FITS = {"ridge": fit_ridge, "mlp": fit_mlp}


# ---- scoring ---------------------------------------------------------------------------------------------------------
def box_iou(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (N, 4) boxes [x1 y1 x2 y2]; corners of a prediction are put in order first. The same in
    normalised and in pixel coordinates (a per-axis scale multiplies every area alike)."""
    p = np.concatenate([np.minimum(pred[:, :2], pred[:, 2:]), np.maximum(pred[:, :2], pred[:, 2:])], 1)
    iw = np.clip(np.minimum(p[:, 2], true[:, 2]) - np.maximum(p[:, 0], true[:, 0]), 0, None)
    ih = np.clip(np.minimum(p[:, 3], true[:, 3]) - np.maximum(p[:, 1], true[:, 1]), 0, None)
    inter = iw * ih
    union = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]) + (true[:, 2] - true[:, 0]) * (true[:, 3] - true[:, 1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def score(kind: str, pred: np.ndarray, data: LocationSet, thr: float = 0.5) -> Dict[str, float]:
    """boxes: ``iou`` (mean) and ``hit50`` (IoU >= 0.5); joints: ``pck`` (distance <= thr x ref, labelled joints)."""
    if kind == "box":
        iou = box_iou(pred, data.y)
        return {"iou": float(iou.mean()), "hit50": float((iou >= 0.5).mean())}
    n = len(pred)
    wh = data.size[:, None, :]
    d = np.linalg.norm((pred.reshape(n, -1, 2) - data.y.reshape(n, -1, 2)) * wh, axis=-1)    # pixels
    ok = (d <= thr * data.ref[:, None]) & data.labelled
    return {"pck": float(ok.sum() / max(data.labelled.sum(), 1))}


HEADLINE = {"box": "hit50", "joints": "pck"}


def probe_site(train_x: np.ndarray, test_x: np.ndarray, train: LocationSet, test: LocationSet, dim: int = 128,
               fit: str = "ridge", seed: int = 0) -> Dict[str, float]:
    """Fit one probe on ``train_x`` (N, F) -> ``train.y``, score it on the held-out ``test_x``."""
    if fit not in FITS:
        raise ValueError(f"unknown probe fit {fit!r}; known: {sorted(FITS)}")
    reduce = Reducer(train_x, dim)
    y = train.y.copy()
    if train.kind == "joints":    # an unlabelled joint is trained to the mean of that coordinate where labelled
        lab = np.repeat(train.labelled, 2, axis=1)
        col_mean = (y * lab).sum(0) / np.maximum(lab.sum(0), 1)
        y = np.where(lab, y, col_mean)
    predict = FITS[fit](reduce(train_x), y, seed=seed)
    return score(train.kind, predict(reduce(test_x)), test)


def chance(train: LocationSet, test: LocationSet) -> Dict[str, float]:
    """The scores of predicting the training mean target for every held-out picture."""
    return score(train.kind, np.repeat(train.y.mean(0, keepdims=True), len(test.y), 0), test)


def probe_all(train_feats: Dict[str, np.ndarray], test_feats: Dict[str, np.ndarray], train: LocationSet,
              test: LocationSet, dim: int = 128, fit: str = "ridge", seed: int = 0) -> Dict[str, Dict[str, float]]:
    """``{site: scores}`` for every site present in both splits, plus ``"chance"``."""
    out = {site: probe_site(train_feats[site], test_feats[site], train, test, dim, fit, seed)
           for site in site_order(train_feats) if site in test_feats}
    out["chance"] = chance(train, test)
    return out


# ---- one run ---------------------------------------------------------------------------------------------------------
def image_size_for(cfg, task: str) -> int:
    """The input size the model is trained with for ``task`` (per-task multi-resolution), else the ViT's own."""
    t = cfg.data.tasks.get(task)
    return t.image_size if t is not None and t.image_size else cfg.vision.image_size


def run_probes(checkpoints: Dict[str, Optional[str]], humanins_dir: str, targets: Sequence[str],
               config: Optional[str] = None, dim: int = 128, fit: str = "ridge", seed: int = 0,
               instruction: bool = True, limit: Optional[int] = None, log=lambda msg: None) -> dict:
    """Probe every site of every checkpoint (``{label: path, or None for a random model}``) for every target, on
    the HumanIns train split (fit) and test split (score). Returns ``{"results": {label: {target: {site: scores}}},
    "kinds": {label: checkpoint kind}, "settings": {...}}``."""
    from lman_ms.data.tokenizers import load_clip_tokenizer
    results, kinds, data_cache = {}, {}, {}
    for label, path in checkpoints.items():
        model, cfg, kinds[label] = load_probe_model(path, config, seed)
        log(f"{label}: {kinds[label]} model from {path or config}")
        tok_path = cfg.data.clip_tokenizer_path or cfg.data.tokenizer_path
        if instruction and not tok_path:
            raise ValueError(f"{label}: its config names no tokenizer (data.tokenizer_path) for the instructions; "
                             "pass --no-instruction to probe with an empty one")
        results[label] = {}
        for target in targets:
            task = TARGETS[target][0] if target in TARGETS else target
            size = image_size_for(cfg, task)
            key = (target, size, tok_path if instruction else "", cfg.adapter.num_instruction_tokens)
            if key not in data_cache:   # the same pictures and instructions for every checkpoint that shares them
                tok = load_clip_tokenizer(tok_path) if instruction else None
                data_cache[key] = tuple(load_location_set(humanins_dir, split, target, size,
                                                          cfg.adapter.num_instruction_tokens, tok, limit)
                                        for split in ("train", "test"))
            train, test = data_cache[key]
            feats = [feature_sites(model, d.images, d.instruction_ids, d.instruction_mask) for d in (train, test)]
            results[label][target] = probe_all(feats[0], feats[1], train, test, dim, fit, seed)
            log(f"{label} {target} ({len(train.y)} train / {len(test.y)} held-out pictures at {size} px): "
                + ", ".join(f"{site} {s[HEADLINE[train.kind]]:.3f}" for site, s in results[label][target].items()))
            if "token_position" not in results[label]:      # on the first target's held-out pictures
                results[label]["token_position"] = token_position_r2(model, test.images)
                log(f"{label} position from one token's content, R^2 x / y: " + ", ".join(
                    f"{k} {v['r2_x']:.2f} / {v['r2_y']:.2f}" for k, v in results[label]["token_position"].items()))
    settings = {"humanins": humanins_dir, "targets": list(targets), "dim": dim, "fit": fit, "seed": seed,
                "instruction": instruction, "limit": limit, "checkpoints": {k: v for k, v in checkpoints.items()}}
    return {"results": results, "kinds": kinds, "settings": settings}


# ---- the table -------------------------------------------------------------------------------------------------------
def format_table(results: Dict[str, Dict[str, Dict[str, Dict[str, float]]]], kinds: Dict[str, str]) -> str:
    """Markdown: rows = feature sites, columns = (target, checkpoint). ``results[checkpoint][target][site]``;
    each cell is the headline score (box hit rate IoU >= 0.5, joint PCK@0.5) with the mean IoU for boxes."""
    checkpoints = list(results)
    targets = [t for t in kinds if any(t in results[c] for c in checkpoints)]
    sites = site_order({s for c in checkpoints for t in targets for s in results[c].get(t, {}) if s != "chance"})
    cols = [(t, c) for t in targets for c in checkpoints]
    head = "| feature site | " + " | ".join(f"{t} @ {c}" for t, c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]

    def cell(scores, kind):
        if scores is None:
            return "n/a"
        main = scores[HEADLINE[kind]]
        return f"{main:.3f} (IoU {scores['iou']:.2f})" if kind == "box" else f"{main:.3f}"
    for site in sites + ["chance"]:
        base = "vit_for_ca" if site.startswith("vit_for_ca") else site
        label = SITE_LABELS.get(base, "chance (training mean)")
        if base == "vit_for_ca":
            label += f" {site[len('vit_for_ca'):]}"
        row = [cell(results[c].get(t, {}).get(site), kinds[t]) for t, c in cols]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def dump(results: dict, path: str) -> None:
    from lman_ms.utils.io import atomic_write_text
    atomic_write_text(path, json.dumps(results, indent=1, sort_keys=True) + "\n")
