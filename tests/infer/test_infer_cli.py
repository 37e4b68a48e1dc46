"""tools/infer.py and the predictor on a briefly trained tiny model: the inference prompt is the training prompt,
single and batched answers, pictures, request files with bad lines, predictions that tools/evaluate.py scores."""
import json
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train"))
from toy_data import make_toy_humanins, toy_overrides  # noqa: E402

from lman_ms.config import load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("infer"))
    out, tok = make_toy_humanins(root)
    over = toy_overrides(root, out, tok, steps=2)
    from lman_ms.train.trainer import Trainer
    cfg = load_config(os.path.join(REPO, "configs/tiny_cpu.yaml"), over)
    Trainer(cfg).fit()
    ms.set_context(mode=ms.GRAPH_MODE)
    return root, out, over, cfg


def _run(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "infer.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)


def test_first_generated_token_is_the_training_forward_argmax(trained):
    root, out, over, cfg = trained
    from lman_ms.data.pipeline import load_image
    from lman_ms.data.tokenizers import fixed_length
    from lman_ms.infer.predictor import LManPredictor
    p = LManPredictor(cfg, os.path.join(root, "run"))
    img = os.path.join(root, "images", "img_000.png")
    instruction = "What is the facial expression of this person?"
    answer_ids = p.generator.generate(
        input_ids=[p.tok.encode(p.template.prompt(instruction))],
        prefix_embeds=p.prefix_cell(*[ms.Tensor(x) for x in (
            load_image(img, cfg.vision.image_size)[None],
            fixed_length(p.clip_tok, instruction, cfg.adapter.num_instruction_tokens)[0][None],
            fixed_length(p.clip_tok, instruction, cfg.adapter.num_instruction_tokens)[1][None],
            p.prefix)]).asnumpy(), max_new_tokens=1).sequences[0]
    ins_ids, ins_mask = fixed_length(p.clip_tok, instruction, cfg.adapter.num_instruction_tokens)
    prompt = np.array([p.tok.encode(p.template.prompt(instruction))], np.int32)
    logits = p.model.stage2_logits(ms.Tensor(load_image(img, cfg.vision.image_size)[None]), ms.Tensor(ins_ids[None]),
                                   ms.Tensor(ins_mask[None]), ms.Tensor(p.prefix), ms.Tensor(prompt),
                                   ms.Tensor(np.ones_like(prompt, np.float32))).asnumpy()
    assert answer_ids[0] == int(logits[0, -1].argmax())
    batch = p.answer([img, img], [instruction, instruction], max_new_tokens=6)
    assert batch[0] == batch[1] == p.answer([img], [instruction], max_new_tokens=6)[0]


def test_cli_single_image_with_picture(trained, tmp_path):
    root, out, over, cfg = trained
    png = tmp_path / "answer.png"
    res = _run("--config", "configs/tiny_cpu.yaml", "--ckpt", os.path.join(root, "run"), "--set", *over,
               "--image", os.path.join(root, "images", "img_001.png"), "--instruction", "Find every face.",
               "--task", "face_detection", "--max-new-tokens", "8", "--visualize", png)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() != "" or res.stdout == "\n"
    from PIL import Image
    with Image.open(png) as im:
        assert im.size == (48, 48)


def test_cli_requests_references_and_bad_lines(trained, tmp_path):
    root, out, over, cfg = trained
    req = tmp_path / "req.jsonl"
    req.write_text(json.dumps({"id": "a", "image": "img_002.png", "instruction": "What is the facial expression?"})
                   + "\n" + json.dumps({"id": "b", "image": "img_003.png", "instruction": "Describe."}) + "\n")
    ans = tmp_path / "ans.jsonl"
    res = _run("--config", "configs/tiny_cpu.yaml", "--ckpt", os.path.join(root, "run"), "--set", *over,
               "--input", req, "--image-root", os.path.join(root, "images"), "--output", ans,
               "--max-new-tokens", "4", "--batch-size", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(l) for l in ans.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and all(isinstance(r["answer"], str) for r in rows)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(req.read_text().splitlines()[0] + "\n{broken\n")
    res = _run("--config", "configs/tiny_cpu.yaml", "--ckpt", os.path.join(root, "run"), "--set", *over,
               "--input", bad, "--output", tmp_path / "never.jsonl")
    assert res.returncode != 0 and "bad.jsonl:2" in res.stderr
    assert not (tmp_path / "never.jsonl").exists()

    preds = tmp_path / "preds.jsonl"
    res = _run("--config", "configs/tiny_cpu.yaml", "--ckpt", os.path.join(root, "run"), "--set", *over,
               "--references", os.path.join(out, "toy_expr"), "--split", "train", "--limit", "3",
               "--output", preds, "--max-new-tokens", "12")
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(preds.read_text().splitlines()) == 3


def test_cli_refuses_checkpoint_of_another_config(trained, tmp_path):
    root, out, over, cfg = trained
    res = _run("--config", "configs/tiny_cpu.yaml", "--ckpt", os.path.join(root, "run"), "--set", *over,
               "adapter.num_query_tokens=4", "--image", os.path.join(root, "images", "img_001.png"),
               "--instruction", "hi")
    assert res.returncode != 0 and "query_tokens" in res.stderr
