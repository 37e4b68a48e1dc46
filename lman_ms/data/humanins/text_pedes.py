"""Text-described pedestrians: CUHK-PEDES, ICFG-PEDES and UFine6926 (pedestrian attribute task, captions).

All three ship one JSON list of records ``{"split", "captions": [...], "file_path", "id", ...}``:

* CUHK-PEDES (Li et al., CVPR 2017): ``CUHK-PEDES/reid_raw.json`` (older copies: ``caption_all.json``), images
  ``CUHK-PEDES/imgs/<file_path>`` (``train_query/p11600_s14885.jpg``, ``CUHK01/...``); splits train/val/test.
* ICFG-PEDES (Ding et al., 2021): ``ICFG-PEDES/ICFG-PEDES.json`` (IRRA's code name; its README says
  ``ICFG_PEDES.json``, also accepted), images ``ICFG-PEDES/imgs/<file_path>`` (``test/0027/...jpg``); train/test.
* UFine6926 (Zuo et al., CVPR 2024): released on request, and the public README documents neither the JSON file
  name nor the folder layout. [UNCERTAIN] We expect ``UFine6926.json`` at the root (any name through
  ``annotation_file=``) and ``file_path`` relative to the root (the reference record shows ``images/1.jpg``), and
  accept train/val/test split values.

Each image yields "describe this person" -> caption pairs and caption -> question/answer pairs
(:mod:`caption_qa`; the paper does this for CUHK-PEDES and ICFG-PEDES, and we treat UFine6926 the same way).
``target`` keeps ``captions``, ``person_id`` (the file's ``id``) and ``attributes``/``attribute_names`` derived
from the captions by the rules behind the answers (1 / 0 / -1 = not stated). ``qa_file=`` takes the pairs written
offline by ``tools/caption_to_qa.py`` (e.g. by an LLM) instead of the rule-based ones.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional, Sequence

from lman_ms.utils.io import atomic_write_text

from .caption_qa import CaptionQAGenerator, QAPair, RuleBasedCaptionQA, caption_attributes, image_qa
from .duplicates import drop_duplicates
from .errors import AnnotationError
from .registry import Converter, register_converter
from .sample import Sample


def read_json(path: str):
    """``json.load`` with syntax errors located at ``path:line``."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise AnnotationError(path, "file not found") from e
    except json.JSONDecodeError as e:
        raise AnnotationError(path, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno) from e


def check_record(item, splits: Sequence[str]) -> dict:
    """One validated record of the annotation list (a ValueError says what is wrong)."""
    if not isinstance(item, dict):
        raise ValueError(f"expected an object, got {type(item).__name__}")
    missing = [k for k in ("split", "captions", "file_path", "id") if k not in item]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    if item["split"] not in splits:
        raise ValueError(f"split {item['split']!r} is not one of {tuple(splits)}")
    path = item["file_path"]
    if not isinstance(path, str) or not path.strip() or os.path.isabs(path) or ".." in path.split("/"):
        raise ValueError(f"file_path must be a relative path inside the dataset, got {path!r}")
    captions = item["captions"]
    if isinstance(captions, str):
        raise ValueError("captions must be a list of strings, got one string")
    if not isinstance(captions, list) or not captions or not all(isinstance(c, str) and c.strip() for c in captions):
        raise ValueError(f"captions must be a non-empty list of non-empty strings, got {captions!r}")
    pid = item["id"]
    if isinstance(pid, str) and pid.strip().isdigit():  # IRRA reads it with int(); accept "11003" too
        return {**item, "id": int(pid)}
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise ValueError(f"id must be an integer, got {pid!r}")
    return item


class _TextPedes(Converter):
    task = "pedestrian_attribute"
    splits = ("train", "val", "test")
    annotation_files: tuple = ()
    image_dir = "imgs"

    @classmethod
    def option_defaults(cls) -> dict:
        # qa: caption -> QA pairs besides the "describe" pairs; qa_file: pairs written by tools/caption_to_qa.py;
        # qa_seed: picks the wording of the describe instructions and questions (the builder's seed is not ours).
        return {"qa": True, "qa_file": None, "annotation_file": None, "qa_seed": 0}

    @classmethod
    def find_annotation(cls, root: str) -> Optional[str]:
        for name in cls.annotation_files:
            if os.path.isfile(os.path.join(root, name)):
                return os.path.join(root, name)
        return None

    @classmethod
    def detect(cls, root: str) -> bool:
        return cls.find_annotation(root) is not None and os.path.isdir(os.path.join(root, cls.image_dir or "."))

    def annotation_path(self) -> str:
        if self.options["annotation_file"]:
            return self.require(self.options["annotation_file"])
        return self.find_annotation(self.root) or self.require(self.annotation_files[0])

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        path = self.annotation_path()
        items = read_json(path)
        if not isinstance(items, list):
            raise AnnotationError(path, f"expected a JSON list of records, got {type(items).__name__}")
        qa = self._qa_items(split) if self.options["qa_file"] else None
        for i, item in enumerate(items):
            with self.policy.guard(path, key=f"record {i}") as g:
                rec = check_record(item, self.splits)
            if not g.ok or rec["split"] != split:
                continue
            key = os.path.splitext(rec["file_path"])[0]
            meta = {"key": f"record {i}"}
            if qa is not None:
                if key not in qa:
                    self.policy.report(AnnotationError(self.options["qa_file"], "no question/answer pairs", key=key))
                    continue
                meta["qa"] = qa[key]
            image = f"{self.image_dir}/{rec['file_path']}" if self.image_dir else rec["file_path"]
            captions = [" ".join(c.split()) for c in rec["captions"]]
            yield Sample(key=key, image=image, target={"captions": captions, "person_id": rec["id"]},
                         source=path, meta=meta)

    def _qa_items(self, split: str) -> Dict[str, List[Dict[str, str]]]:
        path = self.options["qa_file"]
        data = read_json(path)
        for k, want in (("dataset", self.name), ("split", split)):
            if not isinstance(data, dict) or data.get(k) != want:
                got = data.get(k) if isinstance(data, dict) else None
                raise AnnotationError(path, f"written for {k} {got!r}, not {want!r}", key=k)
        items = data.get("items")
        if not isinstance(items, dict):
            raise AnnotationError(path, "expected an object of key -> pairs", key="items")
        for key, pairs in items.items():
            if not isinstance(pairs, list) or not all(
                    isinstance(p, dict) and isinstance(p.get("question"), str) and isinstance(p.get("answer"), str)
                    and p["question"].strip() and p["answer"].strip() for p in pairs):
                raise AnnotationError(path, "expected a list of {question, answer} strings", key=f"items.{key}")
        return items

    def generator(self) -> CaptionQAGenerator:
        return RuleBasedCaptionQA(seed=self.options["qa_seed"])

    def load(self, sample: Sample) -> List[Sample]:
        """Header size, then the caption work (in the workers, since it is per image)."""
        super().load(sample)
        captions = sample.target["captions"]
        values, names = caption_attributes(captions)
        sample.target = {**sample.target, "attributes": values, "attribute_names": names}
        if "qa" in sample.meta:
            generator: CaptionQAGenerator = _Fixed(sample.meta["qa"])
        else:
            generator = self.generator() if self.options["qa"] else _Fixed([])
        sample.qa = image_qa(captions, sample.key, generator, seed=self.options["qa_seed"])
        return [sample]


class _Fixed:
    """Pairs prepared offline: given once per image, so they go with the first caption only."""

    def __init__(self, pairs: List[Dict[str, str]]):
        self.pairs, self.used = pairs, False

    def generate(self, caption: str, key: str = "") -> List[QAPair]:
        if self.used:
            return []
        self.used = True
        return [QAPair(p["question"].strip(), p["answer"].strip(), f"offline{i}") for i, p in enumerate(self.pairs)]


@register_converter
class CUHKPEDES(_TextPedes):
    name = "cuhk_pedes"
    annotation_files = ("reid_raw.json", "caption_all.json")


@register_converter
class ICFGPEDES(_TextPedes):
    name = "icfg_pedes"
    splits = ("train", "test")
    annotation_files = ("ICFG-PEDES.json", "ICFG_PEDES.json")


@register_converter
class UFine6926(_TextPedes):
    name = "ufine6926"
    annotation_files = ("UFine6926.json", "ufine6926.json")
    image_dir = ""  # [UNCERTAIN] file_path taken as relative to the dataset root


def write_qa_file(name: str, root: str, split: str, out_path: str, generator: CaptionQAGenerator,
                  progress: bool = True, **options) -> int:
    """Run ``generator`` over every caption of one split and write the pairs that ``qa_file=`` reads back::

        {"dataset": name, "split": split, "items": {key: [{"question": ..., "answer": ...}, ...]}}

    One pair per aspect per image, from the first caption that yields it. Returns the number of pairs."""
    from tqdm import tqdm

    from .registry import get_converter

    conv = get_converter(name)(root, **options)
    if not isinstance(conv, _TextPedes):
        raise ValueError(f"{name} has no captions; caption -> QA applies to "
                         f"{', '.join(sorted(c.name for c in (CUHKPEDES, ICFGPEDES, UFine6926)))}")
    conv.check_split(split)
    items: Dict[str, List[Dict[str, str]]] = {}
    total = 0
    for sample in tqdm(drop_duplicates(conv.index(split), conv.policy).samples, desc=f"{name}/{split} caption->QA", disable=not progress):
        pairs, aspects = [], set()
        for caption in sample.target["captions"]:
            for qa in generator.generate(caption, sample.key):
                if qa.aspect not in aspects:
                    aspects.add(qa.aspect)
                    pairs.append(qa.as_dict())
        items[sample.key] = pairs
        total += len(pairs)
    data = {"dataset": name, "split": split, "generator": type(generator).__name__, "items": items}
    atomic_write_text(out_path, json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return total
