"""train.eval_steps: the trainer logs the held-out loss of data.eval_path to metrics.jsonl every N steps and at the
end, and it is the per-answer-token loss that train/heldout.py computes on the same records."""
import json
import os

import mindspore as ms
import numpy as np
import pytest

from lman_ms.config import load_config
from lman_ms.data.pipeline import RecordSet
from lman_ms.data.tokenizers import load_clip_tokenizer, load_llm_tokenizer
from lman_ms.train.heldout import heldout_loss
from lman_ms.train.heldout_eval import batch_plan, eval_split
from lman_ms.train.trainer import Trainer

from toy_data import make_toy_humanins, toy_overrides

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _copy_split(humanins, dataset, split, n):
    """The first n train records of one toy dataset written again as another split (its own file)."""
    folder = os.path.join(humanins, dataset)
    lines = open(os.path.join(folder, "train-00000.jsonl")).read().splitlines()[:n]
    with open(os.path.join(folder, f"{split}-00000.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(dict(json.loads(line), split=split)) + "\n")


def test_eval_split_prefers_test_then_val(tmp_path):
    for name in ("a", "b", "c"):
        os.makedirs(tmp_path / name / "src")
    (tmp_path / "a" / "src" / "val-00000.jsonl").write_text("")
    (tmp_path / "a" / "src" / "test-00000.jsonl").write_text("")
    (tmp_path / "b" / "src" / "val-00000.jsonl").write_text("")
    assert eval_split(str(tmp_path / "a")) == "test" and eval_split(str(tmp_path / "b")) == "val"
    with pytest.raises(FileNotFoundError, match="data.eval_path .* no test-\\*.jsonl or val-\\*.jsonl"):
        eval_split(str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="data.eval_path 'nowhere' does not exist"):
        eval_split("nowhere")


def test_batch_plan_interleaves_tasks_and_bounds_the_count():
    records = RecordSet([{}] * 7, {"a": [0, 1, 2, 3, 4], "b": [5, 6]})
    assert batch_plan(records, lambda t: 2, 10) == [("a", [0, 1]), ("b", [5, 6]), ("a", [2, 3]), ("a", [4])]
    assert batch_plan(records, lambda t: 2, 2) == [("a", [0, 1]), ("b", [5, 6])]


def test_trainer_logs_heldout_loss(tmp_path):
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    root = str(tmp_path)
    humanins, tok = make_toy_humanins(root)
    _copy_split(humanins, "toy_expr", "test", 6)     # test: 6 expression records (+ 2 face records below)
    _copy_split(humanins, "toy_face", "test", 2)
    _copy_split(humanins, "toy_face", "val", 4)      # not read: there is a test split
    over = toy_overrides(root, humanins, tok, steps=5, extra=[
        f"data.eval_path={humanins}", "train.eval_steps=2", "train.eval_max_batches=8", "train.save_steps=0"])
    cfg = load_config(os.path.join(REPO, "configs/tiny_cpu.yaml"), over)
    trainer = Trainer(cfg)
    trainer.fit()
    lines = [json.loads(line) for line in open(os.path.join(cfg.train.output_dir, "metrics.jsonl"))]
    evals = [line for line in lines if "eval_loss" in line]
    assert [e["step"] for e in evals] == [2, 4, 5]                    # every eval_steps and after the last step
    assert [line["step"] for line in lines if "loss" in line] == [1, 2, 3, 4, 5]
    # 4-record batches (train.global_batch_size): expression 4 + 2, face 2
    assert all(e["eval_batches"] == 3 and e["eval_records"] == 8 and e["eval_split"] == "test" for e in evals)
    assert all(np.isfinite(e["eval_loss"]) and e["eval_tokens"] > 0 for e in evals)
    assert len({e["eval_loss"] for e in evals}) == 3                 # the model moved between evaluations
    # training mode came back after each evaluation (norm kernels, LoRA dropout)
    assert all(c.training for _, c in trainer.step_cell.cells_and_names())
    # the same number from the whole-split scorer, on the final weights
    records = RecordSet.load(humanins, "test", tasks=["expression_recognition", "face_detection"])
    expected = heldout_loss(trainer.model, cfg, records, load_llm_tokenizer(tok), load_clip_tokenizer(tok),
                            batch_size=4)
    assert evals[-1]["eval_loss"] == pytest.approx(expected, rel=1e-5)
