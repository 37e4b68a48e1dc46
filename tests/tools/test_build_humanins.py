"""tools/build_humanins.py as users run it: a subprocess on fixture trees in the real layouts."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "data", "humanins"))
from fixtures_face_pose import WIDER_TRAIN, write_fddb, write_wider  # noqa: E402

TOOL = os.path.join(REPO, "tools", "build_humanins.py")


def run(*args, cwd=REPO):
    env = {**os.environ, "GLOG_v": "3"}
    return subprocess.run([sys.executable, TOOL, *map(str, args), "--no-progress"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def tree_bytes(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = fh.read()
    return out


def test_single_dataset_both_splits_and_stats(tmp_path):
    write_wider(tmp_path / "wider")
    res = run("--dataset", "wider_face", "--root", tmp_path / "wider", "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("wider_face/train: 6 records from 3 images, 0 skipped")
    assert lines[1].startswith("wider_face/test: 2 records from 1 images, 0 skipped")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["tasks"]["face_detection"]["images"] == 4 and stats["tasks"]["face_detection"]["instructions"] == 8
    assert "| Face Detection | 1 | 4 | 8 |" in (tmp_path / "out" / "stats.md").read_text()
    assert sorted(os.listdir(tmp_path / "out" / "wider_face")) == [
        "test-00000.jsonl", "test.meta.json", "train-00000.jsonl", "train.meta.json"]


def test_bad_line_exits_non_zero_naming_file_and_line(tmp_path):
    lines = list(WIDER_TRAIN)
    lines[9] = "70 60 20"                          # line 10: three fields instead of ten
    write_wider(tmp_path / "wider", train=lines)
    res = run("--dataset", "wider_face", "--root", tmp_path / "wider", "--split", "train", "--out", tmp_path / "out")
    gt = os.path.join(str(tmp_path / "wider"), "wider_face_split", "wider_face_train_bbx_gt.txt")
    assert res.returncode == 1
    assert f"error: {gt}:10: expected 10 fields" in res.stderr
    assert not (tmp_path / "out" / "wider_face" / "train-00000.jsonl").exists()   # nothing half-written

    res = run("--dataset", "wider_face", "--root", tmp_path / "wider", "--split", "train", "--out", tmp_path / "out",
              "--on-error", "skip")
    assert res.returncode == 0, res.stderr
    assert "wider_face/train: 4 records from 2 images, 1 skipped" in res.stdout
    assert "skipped 1 bad item(s):" in res.stdout and f"{gt}:10: expected 10 fields" in res.stdout
    meta = json.loads((tmp_path / "out" / "wider_face" / "train.meta.json").read_text())
    assert meta["skipped"] == 1


def test_rerun_is_byte_identical_and_workers_agree(tmp_path):
    write_fddb(tmp_path / "fddb")
    base = ("--dataset", "fddb", "--root", tmp_path / "fddb", "--seed", "3")
    assert run(*base, "--out", tmp_path / "a").returncode == 0
    first = tree_bytes(tmp_path / "a")
    assert run(*base, "--out", tmp_path / "a").returncode == 0
    assert tree_bytes(tmp_path / "a") == first
    assert run(*base, "--out", tmp_path / "b", "--workers", "2").returncode == 0
    assert tree_bytes(tmp_path / "b") == first
    res = run("--dataset", "fddb", "--root", tmp_path / "fddb", "--seed", "4", "--out", tmp_path / "c")
    assert res.returncode == 0
    # Another seed picks other instructions for the same truth.
    jsonl = "fddb/train-00000.jsonl"
    a = [json.loads(x) for x in first[jsonl].decode().splitlines()]
    c = [json.loads(x) for x in (tmp_path / "c" / jsonl).read_text().splitlines()]
    assert [r["target"] for r in a] == [r["target"] for r in c]
    assert [r["instruction"] for r in a] != [r["instruction"] for r in c]


def test_options_and_usage_errors(tmp_path):
    write_fddb(tmp_path / "fddb")
    res = run("--dataset", "fddb", "--root", tmp_path / "fddb", "--split", "test", "--out", tmp_path / "out",
              "--option", "test_folds=1,10")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("fddb/test: 4 records from 2 images")
    res = run("--dataset", "fddb", "--root", tmp_path / "fddb", "--out", tmp_path / "out", "--option", "folds=2")
    assert res.returncode == 1 and "unknown option(s) ['folds']" in res.stderr
    res = run("--dataset", "fddb", "--root", tmp_path / "fddb")
    assert res.returncode == 2 and "--out is required" in res.stderr
    res = run("--dataset", "fddb", "--root", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert res.returncode == 1 and "dataset root not found" in res.stderr
    res = run("--dataset", "fddb", "--root", tmp_path / "fddb", "--out", tmp_path / "out", "--embed-images")
    assert res.returncode == 2 and "needs --mindrecord" in res.stderr
    res = run("--help")
    assert res.returncode == 0 and "--on-error" in res.stdout and "--embed-images" in res.stdout


def test_all_from_config_with_mindrecord(tmp_path):
    write_wider(tmp_path / "src" / "WIDER")
    write_fddb(tmp_path / "src" / "FDDB")
    (tmp_path / "cfg.yaml").write_text(
        "data_root: src\n"
        "build: {workers: 1, mindrecord: true}\n"
        "datasets:\n"
        "  wider_face: {root: WIDER, splits: [test]}\n"
        "  fddb: {root: FDDB, splits: [train, test], options: {test_folds: '5'}}\n"
        "  mpii: {root: MPII}\n"
        "  aic_pose: {root: AIC, enabled: false}\n")
    res = run("--all", "--config", tmp_path / "cfg.yaml", "--out", tmp_path / "out", "--embed-images",
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "wider_face/test: 2 records from 1 images" in out
    assert "fddb/train: 4 records from 2 images" in out and "fddb/test: 2 records from 1 images" in out
    assert f"mpii: {os.path.join('src', 'MPII')} not found, skipped" in out
    assert "aic_pose: disabled" in out and "sources not present (1): mpii" in out
    assert "(images embedded)" in out
    from lman_ms.data.mindrecord import read_mindrecord

    back = list(read_mindrecord(str(tmp_path / "out" / "fddb" / "test")))
    assert [r["target"]["fold"] for r in back] == [5, 5]
    with open(tmp_path / "src" / "FDDB" / "originalPics" / "2002" / "07" / "19" / "big" / "img_591.jpg", "rb") as f:
        assert back[0]["image_bytes"] == f.read()
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["tasks"]["face_detection"]["datasets"] == 2


@pytest.mark.parametrize("config, message", [
    ("datasets:\n  wider_face: {root: W, split: [train]}\n", "[datasets.wider_face.split]: unknown key"),
    ("datasets:\n  widerface: {root: W}\n", "[datasets.widerface]: unknown dataset"),
    ("build: {worker: 2}\n", "[build.worker]: unknown key"),
])
def test_config_errors_name_the_key(tmp_path, config, message):
    (tmp_path / "cfg.yaml").write_text(config)
    res = run("--all", "--config", tmp_path / "cfg.yaml", "--out", tmp_path / "out")
    assert res.returncode == 2 and message in res.stderr


def test_shipped_config_lists_every_source(tmp_path):
    res = run("--all", "--config", os.path.join(REPO, "configs", "humanins.yaml"), "--data-root", tmp_path,
              "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    names = run("--list").stdout.split()
    assert len(names) == 22
    for name in names:
        assert f"\n{name}: " in "\n" + res.stdout
    assert "sources not present (22)" in res.stdout


def test_instruction_pool_replaces_the_seeds(tmp_path):
    write_wider(tmp_path / "wider")
    pool = {"face_detection": ["Point out each face, please."]}
    (tmp_path / "pool.json").write_text(json.dumps(pool))
    res = run("--dataset", "wider_face", "--root", tmp_path / "wider", "--split", "train", "--out", tmp_path / "out",
              "--instruction-pool", tmp_path / "pool.json", "--instructions-per-image", 1)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(l) for l in open(tmp_path / "out" / "wider_face" / "train-00000.jsonl")]
    assert rows and all(r["instruction"].startswith("Point out each face, please. The original resolution")
                        for r in rows)
