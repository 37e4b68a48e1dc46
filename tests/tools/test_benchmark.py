"""tools/benchmark.py --quick as users run it: a subprocess writing the Markdown report and the JSON run.

Structure only: every figure and ratio is a finite positive number; no speed is asserted (the machine is shared).
"""
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "benchmark.py")
SECTIONS = {"train": {"train_step", "mfu"}, "generate": {"generation"}, "convert": {"conversion"},
            "build": {"humanins_build"}}


def run(*args):
    env = {**os.environ, "GLOG_v": "3"}
    return subprocess.run([sys.executable, TOOL, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def _positive(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    md, js = out / "bench.md", out / "bench.json"
    res = run("--quick", "--out", md, "--json", js, "--work-dir", out / "work")
    assert res.returncode == 0, res.stderr[-4000:]
    return res, md.read_text(), json.loads(js.read_text())


def test_quick_run_json_structure(quick_run):
    _, _, data = quick_run
    assert data["options"]["quick"] is True
    machine = data["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["memory_gib"] > 0 and machine["threads"] >= 1
    for lib in ("mindspore", "mindformers", "torch", "transformers"):
        assert machine["versions"][lib] != "not installed"
    names = [b["name"] for b in data["benchmarks"]]
    assert names == ["train_step", "mfu", "generation", "conversion", "humanins_build", "serving"]
    for bench in data["benchmarks"]:
        assert bench["figures"], bench["name"]
        assert bench["seconds"] > 0
        for f in bench["figures"]:
            assert f["better"] in ("higher", "lower")
            assert f["metric"] and f["unit"] and f["reference"]
            for key in ("value", "reference_value", "ratio"):
                assert _positive(f[key]), (bench["name"], f["metric"], key, f[key])
            assert f["ratio"] == pytest.approx(f["value"] / f["reference_value"])
    by_name = {b["name"]: b for b in data["benchmarks"]}
    # the two training sides do the same work: same parameter count, both losses finite
    counts = machine["thread_counts"]
    assert counts == sorted({1, os.cpu_count()}) and machine["threads"] == counts[-1]
    details = by_name["train_step"]["details"]
    assert details["parameters"]["trainable"] > 0
    assert "median of 2 steps" in by_name["train_step"]["figures"][0]["note"]  # --quick: 2 rounds x 1 step
    assert sorted(map(int, details["per_threads"])) == counts
    for n, row in details["per_threads"].items():  # both sides really ran with n threads
        assert row["threads"] == {"mindspore": int(n), "torch": int(n)}
        assert all(math.isfinite(x) for x in row["ms_loss_first_last"] + row["torch_loss_first_last"])
    # generation: cache, recompute and HF at every length and thread count
    per_threads = by_name["generation"]["details"]["per_threads"]
    assert sorted(map(int, per_threads)) == counts
    for per_length in per_threads.values():
        assert len(per_length) >= 2
        for row in per_length.values():
            assert all(_positive(row[k]) for k in ("cache_tok_s", "recompute_tok_s", "hf_tok_s"))
    assert by_name["conversion"]["details"]["tensors"] > 0
    assert set(by_name["humanins_build"]["details"]["per_workers"]) == {"1", "2"}
    serving = by_name["serving"]["details"]
    assert [r["clients"] for r in serving["runs"]] == [1, 4] and all(not r["errors"] for r in serving["runs"])


def test_quick_run_markdown(quick_run):
    res, md, data = quick_run
    assert res.stdout == md  # printed and written: the same report
    assert "### Machine" in md and "### Results" in md
    assert data["machine"]["cpu"] in md
    header = next(line for line in md.splitlines() if line.startswith("| section"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["section", "figure", "ours", "reference", "ratio"]
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| section")]
    assert len(rows) == sum(len(b["figures"]) for b in data["benchmarks"])
    for row in rows:
        ratio = row.strip("|").split("|")[-1]
        assert "×" in ratio and math.isfinite(float(ratio.replace("*", "").split("×")[0]))
    assert "== train_step ==" in res.stderr and "== humanins_build ==" in res.stderr  # progress on stderr


def test_only_and_bad_usage(tmp_path):
    res = run("--only", "bogus")
    assert res.returncode == 2 and "unknown benchmark" in res.stderr
    res = run("--threads", "0")
    assert res.returncode == 2 and "--threads" in res.stderr
    res = run("--quick", "--only", "build", "--json", tmp_path / "b.json")
    assert res.returncode == 0, res.stderr[-4000:]
    data = json.loads((tmp_path / "b.json").read_text())
    assert [b["name"] for b in data["benchmarks"]] == sorted(SECTIONS["build"])
    assert data["options"]["only"] == "humanins_build"


def test_sections_resolve():
    sys.path.insert(0, REPO)
    from benchmarks import BENCHMARKS, resolve
    assert resolve(None) == list(BENCHMARKS)
    assert resolve(["convert,train"]) == ["train_step", "mfu", "conversion"]
    assert resolve(["generate", "build"]) == ["generation", "humanins_build"]
    with pytest.raises(ValueError):
        resolve(["train,nope"])
