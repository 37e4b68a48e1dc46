"""The main job end to end at toy length: SynthHuman -> HumanIns -> stage 1 -> stage 2 -> answers -> report.

Learning itself is shown by the full demo (README); here every stage runs with a few steps, and the report must
carry a metric, chance level and target for all six tasks, the stage-1 retrieval and stage-2 held-out loss, and
pictures of the answers. A second call finds every stage done and only re-evaluates."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_runs_every_stage_and_reports_six_tasks(tmp_path):
    out = str(tmp_path / "demo")
    cmd = ["bash", os.path.join(REPO, "scripts/run_demo.sh"), out, "--num", "20", "--stage1-steps", "2",
           "--stage2-steps", "2", "--eval-per-dataset", "2", "--pictures", "1", "--workers", "1",
           "--warmup-steps", "3", "--attribute-images", "30", "--warmup-location", "--stage2-set",
           "llm.num_hidden_layers=1"]
    proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.load(open(os.path.join(out, "demo_report.json")))
    rows = {r["task"]: r for r in doc["table"]}
    assert set(rows) == {"expression_recognition", "action_recognition", "pedestrian_attribute", "face_detection",
                         "pedestrian_detection", "pose_estimation"}
    for r in rows.values():
        assert r["n"] == 2 and r["target"] > r["chance"] >= 0.0
        assert r["value"] is None or 0.0 <= r["value"] <= 1.0
    assert rows["expression_recognition"]["target"] == 3 * rows["expression_recognition"]["chance"]
    ret = doc["learning"]["stage1_retrieval"]
    assert 0.0 <= ret["i2t_R@1"] <= 1.0 and ret["chance_R@1"] == 1.0 / ret["num_images"]
    loss = doc["learning"]["stage2_heldout_loss"]
    assert loss["start"] > 0 and loss["end"] > 0 and loss["records"] >= 6
    report = open(os.path.join(out, "demo_report.md")).read()
    assert "| pose_estimation | mpii | PCKh@0.5 |" in report and "held-out loss" in report
    missed = [r["task"] for r in rows.values() if not r["met"]]     # 2 steps: localisation at least is missed
    assert missed and all(t in report.split("Targets not met: ")[1].split("\n")[0] for t in missed)
    pictures = os.listdir(os.path.join(out, "pictures"))
    assert len(pictures) == 6 and all(p.endswith(".png") for p in pictures)
    assert sum(1 for _ in open(os.path.join(out, "predictions.jsonl"))) == 12
    # stage 1 also saw a caption written from the labels of each training picture of the labelled sources
    label_caps = [json.loads(x) for x in open(os.path.join(out, "humanins", "label_captions", "train-00000.jsonl"))]
    assert label_caps and {r["task"] for r in label_caps} == {"caption"}
    # --attribute-images: more PA-100K crops than --num for the other sources
    manifest = json.load(open(os.path.join(out, "synth", "synth_manifest.json")))
    assert manifest["counts"]["pa100k"]["train_images"] > manifest["counts"]["rafdb"]["train_images"]
    assert {r["dataset"] for r in label_caps} == {"rafdb", "stanford40", "pa100k"}
    # the visual warm-up ran first, scored its classifiers, and stage 1 started from its ViT + adapter
    warm = doc["learning"]["visual_warmup"]
    assert warm["steps"] == 3 and warm["location"] is True
    assert set(warm["after"]) == {"rafdb", "stanford40", "pa100k", "coco_person", "mpii", "wider_face"}
    assert "Visual warm-up (3 steps)" in report
    per = warm["steps_per_source"]
    assert set(per) == set(warm["after"]) and sum(per.values()) == 3 and f"({per['pa100k']} steps)" in report
    stage1_log = open(os.path.join(out, "stage1", "train.log")).read() if os.path.exists(
        os.path.join(out, "stage1", "train.log")) else proc.stdout
    assert "visual_warmup.ckpt" in stage1_log
    # --stage2-set reached stage 2 and its saved model (and so the answers, which load that model's config)
    import yaml
    assert yaml.safe_load(open(os.path.join(out, "stage2", "model", "config.yaml")))["llm"]["num_hidden_layers"] == 1

    again = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=1500)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "already trained" in again.stdout and "visual warm-up: reusing" in again.stdout
    # a larger --stage2-steps continues stage 2 from its last checkpoint (stage 1 stays done)
    assert cmd[7:9] == ["--stage2-steps", "2"]
    more = subprocess.run(cmd[:8] + ["3"] + cmd[9:], cwd=str(tmp_path), capture_output=True, text=True, timeout=1500)
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert more.stdout.count("already trained") == 1 and "at step 2" in more.stdout + more.stderr
    last = json.loads(open(os.path.join(out, "stage2", "metrics.jsonl")).readlines()[-1])
    assert last["step"] == 3
    # another warm-up length under a stage 1 trained from the old one: refused, nothing deleted
    i = cmd.index("--warmup-steps") + 1
    other = subprocess.run(cmd[:i] + ["4"] + cmd[i + 1:], cwd=str(tmp_path), capture_output=True, text=True,
                           timeout=1500)
    assert other.returncode != 0 and "--fresh" in other.stderr
    # other --stage2-set overrides than the trained stage 2's: refused before any work
    assert cmd[-2:] == ["--stage2-set", "llm.num_hidden_layers=1"]
    other = subprocess.run(cmd[:-1] + ["llm.num_hidden_layers=2"], cwd=str(tmp_path), capture_output=True, text=True,
                           timeout=1500)
    assert other.returncode != 0 and "trained with --stage2-set llm.num_hidden_layers=1" in other.stderr
    assert os.path.isdir(os.path.join(out, "stage1", "checkpoints")) and os.path.isfile(
        os.path.join(out, "visual_warmup", "visual_warmup.ckpt"))


def test_stage1_starts_from_the_warmup_or_trains_the_vit():
    from lman_ms.config import load_config
    from lman_ms.demo import stage1_start
    cfg = os.path.join(REPO, "configs", "tiny_stage1_pretrain.yaml")
    warm = load_config(cfg, stage1_start({"checkpoint": "/w/visual_warmup.ckpt"})).train
    assert warm.init_checkpoint == "/w/visual_warmup.ckpt" and warm.freeze_vision is True    # frozen, as the paper
    cold = load_config(cfg, stage1_start(None)).train
    assert cold.init_checkpoint == "" and cold.freeze_vision is False    # --warmup-steps 0: a random ViT learns


def test_profiles_fill_what_the_command_line_leaves_out():
    from lman_ms.demo import PROFILES, parse_args
    default = parse_args([])
    assert default.profile == "default" and default.warmup_location is False
    assert (default.warmup_steps, default.stage2_steps) == (PROFILES["default"]["warmup_steps"], None)
    full = parse_args(["--profile", "full"])
    assert (full.warmup_steps, full.stage2_steps) == (PROFILES["full"]["warmup_steps"],
                                                      PROFILES["full"]["stage2_steps"])
    assert full.stage2_steps > 1600 and full.warmup_steps > default.warmup_steps
    assert full.warmup_location is True and full.stage2_set == ["llm.num_hidden_layers=4"] and default.stage2_set == []
    mine = parse_args(["--profile", "full", "--stage2-steps", "5", "--no-warmup-location"])
    assert mine.stage2_steps == 5 and mine.warmup_location is False and mine.warmup_steps == full.warmup_steps
    assert parse_args(["--profile", "full", "--stage2-set"]).stage2_set == []      # given empty: none at all


def test_a_bad_stage2_override_is_refused_before_any_work(tmp_path):
    from lman_ms.config import ConfigError
    from lman_ms.demo import main
    with pytest.raises(ConfigError, match="llm.num_layerz"):
        main(["--out", str(tmp_path / "demo"), "--stage2-set", "llm.num_layerz=4"])
    assert os.listdir(tmp_path / "demo") == []


def test_a_trained_stage2_refuses_other_stage2_overrides(tmp_path):
    from lman_ms.demo import stage2_settings
    out = str(tmp_path / "demo")
    stage2_settings(out, ["llm.num_hidden_layers=4"])
    stage2_settings(out, [])                       # nothing trained yet: the new choice is recorded
    os.makedirs(os.path.join(out, "stage2", "checkpoints"))
    stage2_settings(out, [])                       # the same: fine
    with pytest.raises(SystemExit, match=r"trained with --stage2-set \(none\), not llm.num_hidden_layers=4"):
        stage2_settings(out, ["llm.num_hidden_layers=4"])
    os.remove(os.path.join(out, "stage2", "demo_stage2_set.json"))   # a stage 2 from before they were recorded
    stage2_settings(out, [])
    with pytest.raises(SystemExit, match="--fresh"):
        stage2_settings(out, ["train.learning_rate=1e-3"])
