"""A tiny HumanIns-format record set (as the builder writes it) and a tokenizer, for training tests."""
import json
import os

import numpy as np
from PIL import Image

from lman_ms.data.conversation import SYSTEM
from lman_ms.data.humanins.answers import detection_answer, expression_answer
from lman_ms.data.tokenizers import train_sentencepiece

COLOURS = {"happiness": (220, 40, 40), "sadness": (40, 40, 220), "surprise": (40, 200, 40)}


def make_toy_humanins(root, n=12, seed=0):
    """Writes ``root/images``, ``root/humanins/{toy_expr,toy_face,toy_caption}/train-00000.jsonl`` + meta, and
    ``root/tokenizer/tokenizer.model``. Returns (humanins dir, tokenizer dir)."""
    rng = np.random.default_rng(seed)
    img_dir = os.path.join(root, "images")
    os.makedirs(img_dir, exist_ok=True)
    out = os.path.join(root, "humanins")
    recs = {"toy_expr": [], "toy_face": [], "toy_caption": []}
    names = sorted(COLOURS)
    for i in range(n):
        label = names[i % len(names)]
        x0, y0 = int(rng.integers(2, 20)), int(rng.integers(2, 20))
        arr = np.full((48, 48, 3), 128, np.uint8)
        arr[y0:y0 + 24, x0:x0 + 24] = COLOURS[label]
        fname = f"img_{i:03d}.png"
        Image.fromarray(arr).save(os.path.join(img_dir, fname))
        box = [x0, y0, x0 + 24, y0 + 24]
        base = dict(dataset="", split="train", image=fname, width=48, height=48)
        recs["toy_expr"].append(dict(base, id=f"toy_expr/train/{i}/0", task="expression_recognition",
                                     dataset="toy_expr", instruction="What is the facial expression of this person?",
                                     answer=expression_answer(label),
                                     target={"label": names.index(label), "label_name": label, "label_names": names}))
        recs["toy_face"].append(dict(base, id=f"toy_face/train/{i}/0", task="face_detection", dataset="toy_face",
                                     instruction="Find every face. The original resolution of this image has a "
                                                 "width and a height of 48 and 48.",
                                     answer=detection_answer("face_detection", [box]), target={"boxes": [box]}))
        recs["toy_caption"].append(dict(base, id=f"toy_caption/train/{i}/0", task="caption", dataset="toy_caption",
                                        instruction="Describe this image.", answer=f"a {label} square",
                                        target={"captions": [f"a {label} square", f"one {label} block on grey"]}))
    texts = [SYSTEM + " USER: ASSISTANT:"] * 5
    for ds, rows in recs.items():
        d = os.path.join(out, ds)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "train-00000.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
                texts += [r["instruction"], r["answer"]] + r["target"].get("captions", [])
        with open(os.path.join(d, "train.meta.json"), "w") as f:
            json.dump({"dataset": ds, "image_root": img_dir}, f)
    tok = os.path.join(root, "tokenizer")
    train_sentencepiece(texts * 3, tok, vocab_size=400)
    return out, tok


def toy_overrides(root, out, tok, stage=2, steps=4, extra=()):
    return [f"train.stage={stage}", f"train.max_steps={steps}", f"train.output_dir={os.path.join(root, 'run')}",
            f"data.train_path={out}", f"data.tokenizer_path={tok}", "train.save_steps=2", "train.log_steps=1",
            "train.warmup_steps=1", "train.global_batch_size=4", "data.num_workers=1", "llm.vocab_size=400",
            "text.vocab_size=400", "text.bos_token_id=1", "text.eos_token_id=2", "text.pad_token_id=0",
            "train.log_file=false", *extra]
