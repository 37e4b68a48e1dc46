"""tools/ablation.py: the Table 6 numbering, setting selection, and a 1-step sweep over the two settings that take
the two code paths (no stage 1 with both adapter switches off; stage 1 + stage 2 with a changed query-token
count), evaluated on held-out toy records, written as one Markdown + JSON table and not rerun when resumed."""
import json
import os
import sys

import numpy as np
import pytest

from lman_ms import ablation
from lman_ms.ablation import figure6_settings, select_settings, table6_settings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train"))
from toy_data import make_toy_humanins  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_table6_numbering_matches_the_paper():
    rows = {s.number: s for s in table6_settings()}
    assert len(rows) == 16
    flags = lambda s: (s.lic, s.vmlm, s.multi_grained, s.instruction_aware)  # noqa: E731
    # rows of Table 6: 0 none, 1 mg, 2 ins, 4 lic, 5 lic+mg, 8 vmlm, 12 lic+vmlm, 14 lic+vmlm+ins, 15 all
    assert flags(rows[0]) == (False, False, False, False) and not rows[0].has_stage1
    assert flags(rows[1]) == (False, False, True, False) and flags(rows[2]) == (False, False, False, True)
    assert flags(rows[4]) == (True, False, False, False) and flags(rows[5]) == (True, False, True, False)
    assert flags(rows[8]) == (False, True, False, False) and flags(rows[12]) == (True, True, False, False)
    assert flags(rows[14]) == (True, True, False, True) and flags(rows[15]) == (True, True, True, True)
    assert rows[6].overrides() == ["loss.lic=true", "loss.vmlm=false", "adapter.multi_grained=false",
                                   "adapter.instruction_aware=true"]
    q = figure6_settings((2, 16))
    assert [s.name for s in q] == ["F6-q2", "F6-q16"] and q[1].overrides()[-1] == "adapter.num_query_tokens=16"
    assert [s.name for s in select_settings(table6_settings(), ["T6-1?", "T6-03"])] == \
        ["T6-03", "T6-10", "T6-11", "T6-12", "T6-13", "T6-14", "T6-15"]
    with pytest.raises(ValueError, match="'T7-\\*' matches no setting; known: T6-00"):
        select_settings(table6_settings(), ["T7-*"])


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    train_root = str(tmp_path_factory.mktemp("abl_train"))
    data, tok = make_toy_humanins(train_root, n=12, seed=0)
    heldout_root = str(tmp_path_factory.mktemp("abl_heldout"))
    heldout, _ = make_toy_humanins(heldout_root, n=6, seed=1)   # other square positions, same vocabulary
    return data, tok, heldout


def test_ablation_cli_writes_one_table_and_resumes(toy, tmp_path, monkeypatch, capsys):
    data, tok, heldout = toy
    out = str(tmp_path / "ablation")
    argv = ["--config", os.path.join(REPO, "configs/tiny_cpu.yaml"), "--data", data, "--out", out, "--steps", "1",
            "--settings", "T6-00", "F6-q4", "--eval-data", heldout, "--eval-split", "train",
            "--max-eval-records", "4", "--max-new-tokens", "12",
            "--set", f"data.tokenizer_path={tok}", "llm.vocab_size=400", "text.vocab_size=400", "text.bos_token_id=1",
            "text.eos_token_id=2", "text.pad_token_id=0", "train.global_batch_size=4", "data.num_workers=1",
            "train.warmup_steps=1", "train.save_steps=0"]
    from tools.ablation import main
    assert main(argv) == 0
    doc = json.load(open(os.path.join(out, "ablation.json")))
    rows = {r["setting"]: r for r in doc["rows"]}
    assert list(rows) == ["T6-00", "F6-q4"] and doc["steps"] == 1
    none, q4 = rows["T6-00"], rows["F6-q4"]
    # T6-00: no stage-1 objective -> no stage 1, no retrieval; both adapter switches off
    assert "stage1_loss" not in none and "i2t_R@1" not in none
    assert (none["mg"], none["ins"], none["num_query_tokens"]) == (False, False, 8)
    assert not os.path.exists(os.path.join(out, "T6-00", "stage1"))
    # F6-q4: stage 1 then stage 2 from its checkpoint, 4 query tokens, R@1 on the 4 held-out captions kept
    assert q4["num_query_tokens"] == 4 and q4["stage1_loss"] > 0
    assert 0.0 <= q4["i2t_R@1"] <= 1.0 and 0.0 <= q4["t2i_R@1"] <= 1.0
    assert q4["chance_R@1"] == pytest.approx(1 / 4)         # --max-eval-records 4
    s2_cfg = open(os.path.join(out, "F6-q4", "stage2", "checkpoints", "step_00000001", "config.yaml")).read()
    assert "init_checkpoint: " + os.path.join(out, "F6-q4", "stage1", "checkpoints", "step_00000001") in s2_cfg
    for r in (none, q4):
        assert np.isfinite(r["heldout_loss"]) and r["heldout_loss"] > 0 and np.isfinite(r["stage2_loss"])
        # held-out task metrics from greedy answers: expression accuracy and face AP of the toy datasets
        assert {"toy_expr/acc", "toy_expr/parse_failures", "toy_face/AP", "toy_face/parse_failures"} <= \
            set(r["metrics"])
        assert 0 <= r["metrics"]["toy_expr/parse_failures"] <= 4
    assert doc["columns"][:3] == ["setting", "no", "lic"] and "toy_face/AP" in doc["columns"]

    md = open(os.path.join(out, "ablation.md")).read().splitlines()
    header = next(l for l in md if l.startswith("| setting"))
    table = [l for l in md if l.startswith("| T6-") or l.startswith("| F6-")]
    assert header.count("|") - 1 == len(doc["columns"])
    assert [l.split("|")[1].strip() for l in table] == ["T6-00", "F6-q4"]
    assert all(l.count("|") == header.count("|") for l in table)
    assert table[0].split("|")[doc["columns"].index("i2t_R@1") + 1].strip() == "-"
    assert "| setting |" in capsys.readouterr().out

    # resumed: finished settings are kept, nothing is trained again
    def refuse(*a, **k):
        raise AssertionError("a finished setting was run again")
    monkeypatch.setattr(ablation, "run_setting", refuse)
    assert main(argv) == 0
    assert json.load(open(os.path.join(out, "ablation.json")))["rows"] == doc["rows"]
