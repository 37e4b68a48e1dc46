"""Bad input across the command-line tools, run as users run them (subprocesses): missing files, truncated and
non-image files, malformed annotation / request / prediction lines, a checkpoint of another config, unknown config
keys, untrusted pickles. Each gives one ``error: ...`` line naming the file and line or key (no traceback), a
non-zero exit code, and leaves what was already written intact; ``--on-error skip`` completes and counts the skips.

The tools that import MindSpore cost seconds each, so most checks use paths that fail before the model is built."""
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "train"))
sys.path.insert(0, os.path.join(REPO, "tests", "data", "humanins"))
from fixtures_face_pose import write_wider  # noqa: E402
from toy_data import make_toy_humanins, toy_overrides  # noqa: E402

CONFIG = os.path.join(REPO, "configs", "tiny_cpu.yaml")


def tool(name, *args, cwd=REPO, timeout=600):
    env = {**os.environ, "GLOG_v": "3"}
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", name), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_user_error(res, *needles, code=None):
    """Non-zero exit, no traceback, one ``error:`` line holding every needle."""
    assert res.returncode != 0, res.stdout[-2000:]
    if code is not None:
        assert res.returncode == code, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [l for l in res.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1, res.stderr[-3000:]
    for needle in needles:
        assert str(needle) in errors[0], (needle, errors[0])
    return errors[0]


def write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Toy HumanIns records + tokenizer, and a checkpoint folder of an (untrained) tiny stage-2 model."""
    root = str(tmp_path_factory.mktemp("bad_inputs"))
    out, tok = make_toy_humanins(root)
    over = toy_overrides(root, out, tok) + ["context.mode=PYNATIVE_MODE"]
    import mindspore as ms
    from lman_ms.config import load_config
    from lman_ms.models.lman import LMan
    ckpt = os.path.join(root, "ckpt", "step_00000001")
    os.makedirs(ckpt)
    ms.save_checkpoint(LMan(load_config(CONFIG, over), stage=2), os.path.join(ckpt, "model.ckpt"))
    write(os.path.join(ckpt, "state.json"), json.dumps({"step": 1}))
    return root, out, over, ckpt


# ---- tools that fail before MindSpore: config keys, annotation lines, files --------------------------------------
def test_unknown_config_keys_name_the_key(tmp_path):
    bad = write(tmp_path / "bad.yaml", read(CONFIG) + "\nadapter:\n  num_query_tokenz: 4\n")
    assert_user_error(tool("count_params.py", "--config", bad), str(bad), "adapter.num_query_tokenz", code=2)
    assert_user_error(tool("count_params.py", "--config", CONFIG, "--set", "train.max_stepz=3"),
                      "train.max_stepz", code=2)
    assert_user_error(tool("count_params.py", "--config", CONFIG, "--set", "llm.hidden_size=abc"),
                      "llm.hidden_size", code=2)
    assert_user_error(tool("count_params.py", "--config", tmp_path / "nope.yaml"), "nope.yaml", code=2)
    # --set on the tools that build models: the config is checked before anything is built or written
    out = tmp_path / "never"
    assert_user_error(tool("train.py", "--config", CONFIG, "--set", "train.max_stepz=3",
                           f"train.output_dir={out}"), "train.max_stepz", code=2)
    assert_user_error(tool("infer.py", "--config", CONFIG, "--ckpt", out, "--image", "x.png", "--instruction", "hi",
                           "--set", "adapter.foo=1"), "adapter.foo", code=2)
    assert_user_error(tool("eval_retrieval.py", "--config", bad, "--ckpt", out, "--records", out),
                      "adapter.num_query_tokenz", code=2)
    assert_user_error(tool("ablation.py", "--config", CONFIG, "--data", out, "--out", out, "--set", "vision.foo=2"),
                      "vision.foo", code=2)
    assert not out.exists()


def test_evaluate_broken_prediction_line_keeps_outputs(tmp_path):
    refs = write(tmp_path / "refs.jsonl", json.dumps({
        "id": "r1", "task": "expression_recognition", "dataset": "toy", "split": "test", "image": "a.png",
        "instruction": "q", "answer": "happiness",
        "target": {"label": 0, "label_name": "happiness", "label_names": ["happiness", "sadness"]}}) + "\n")
    preds = write(tmp_path / "preds.jsonl", '{"id": "r1", "answer": "happiness"}\n{"id": "r2", "answer"\n')
    metrics = write(tmp_path / "metrics.json", "from an earlier run\n")
    report = write(tmp_path / "report.md", "from an earlier run\n")
    res = tool("evaluate.py", "--predictions", preds, "--references", refs, "--json", metrics, "--out", report,
               "--no-progress")
    assert_user_error(res, "preds.jsonl:2", "invalid JSON", code=1)
    assert read(metrics) == read(report) == "from an earlier run\n"
    assert_user_error(tool("evaluate.py", "--predictions", tmp_path / "nope.jsonl", "--references", refs),
                      "nope.jsonl", code=1)
    write(preds, '{"id": "r1", "answer": "happiness"}\n')
    res = tool("evaluate.py", "--predictions", preds, "--references", refs, "--json",
               tmp_path / "no" / "dir" / "m.json", "--no-progress")
    assert res.returncode == 0, res.stderr     # a missing output folder is created
    os.makedirs(tmp_path / "ro")
    blocker = write(tmp_path / "ro" / "file", "")
    assert_user_error(tool("evaluate.py", "--predictions", preds, "--references", refs, "--json",
                           os.path.join(blocker, "m.json"), "--no-progress"), "m.json", code=1)


def test_build_humanins_bad_images_and_lines(tmp_path):
    wider = tmp_path / "wider"
    write_wider(wider)
    out = tmp_path / "out"
    res = tool("build_humanins.py", "--dataset", "wider_face", "--root", wider, "--split", "train", "--out", out,
               "--no-progress")
    assert res.returncode == 0, res.stderr
    jsonl = out / "wider_face" / "train-00000.jsonl"
    before = read(jsonl)
    images = wider / "WIDER_train" / "images"
    write(images / "0--Parade" / "0_Parade_Parade_0_12.jpg", "not an image\n")           # non-image
    hand = images / "1--Handshaking" / "1_Handshaking_Handshaking_1_7.jpg"
    data = hand.read_bytes()
    hand.write_bytes(data[:40])                                                            # truncated
    os.remove(images / "0--Parade" / "0_Parade_marchingband_1_5.jpg")                      # missing
    res = tool("build_humanins.py", "--dataset", "wider_face", "--root", wider, "--split", "train", "--out", out,
               "--no-progress")
    assert_user_error(res, "0_Parade_", code=1)
    assert read(jsonl) == before                       # the earlier build is untouched
    res = tool("build_humanins.py", "--dataset", "wider_face", "--root", wider, "--split", "train", "--out",
               tmp_path / "skip", "--no-progress", "--on-error", "skip")
    assert res.returncode == 0, res.stderr
    assert "0 records from 0 images, 3 skipped" in res.stdout and "skipped 3 bad item(s):" in res.stdout
    for name in ("0_Parade_marchingband_1_5.jpg: image file not found", "1_Handshaking_Handshaking_1_7.jpg: not a",
                 "0_Parade_Parade_0_12.jpg: not a readable image"):
        assert name in res.stdout
    # a malformed annotation line: named by file and line, the earlier build still untouched
    gt = wider / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    lines = read(gt).splitlines()
    lines[2] = "10 20 30"
    write(gt, "\n".join(lines) + "\n")
    res = tool("build_humanins.py", "--dataset", "wider_face", "--root", wider, "--split", "train", "--out", out,
               "--no-progress")
    assert_user_error(res, f"{gt}:3", code=1)
    assert read(jsonl) == before


def test_generators_bad_files_keep_outputs(tmp_path):
    # paraphrase_instructions.py: a broken pool JSON (file:line), a missing one; the old --out stays
    old = write(tmp_path / "pool_out.json", '{"old": ["kept"]}\n')
    seeds = write(tmp_path / "seeds.json", '{"face_detection": [\n  "Find the faces."\n  "Where?"]}\n')
    assert_user_error(tool("paraphrase_instructions.py", "--seeds", seeds, "--out", old), "seeds.json:3", code=1)
    assert_user_error(tool("paraphrase_instructions.py", "--seeds", tmp_path / "nope.json", "--out", old),
                      "nope.json", code=1)
    assert read(old) == '{"old": ["kept"]}\n'
    # caption_to_qa.py: an annotation record without captions (file + key); the old --out stays
    root = tmp_path / "cuhk"
    os.makedirs(root / "imgs")
    ann = write(root / "reid_raw.json", json.dumps([
        {"split": "train", "captions": ["a man in a red coat"], "file_path": "a.jpg", "id": 1},
        {"split": "train", "file_path": "b.jpg", "id": 2}]))
    qa = write(tmp_path / "qa.json", "old\n")
    res = tool("caption_to_qa.py", "--dataset", "cuhk_pedes", "--root", root, "--split", "train", "--out", qa)
    assert_user_error(res, ann, "record 1", "captions", code=1)
    assert_user_error(tool("caption_to_qa.py", "--dataset", "cuhk_pedes", "--root", tmp_path / "nowhere",
                           "--split", "train", "--out", qa), "nowhere", code=1)
    assert read(qa) == "old\n"
    # make_synth.py: an output path that cannot be created
    blocker = write(tmp_path / "blocker", "")
    assert_user_error(tool("make_synth.py", "--out", os.path.join(blocker, "synth"), "--num", 1, "--sources",
                           "rafdb"), "blocker", code=1)


def test_convert_weights_bad_checkpoints(tmp_path):
    import torch
    from tests.convert.hf_fixtures import tiny_clip
    src = tiny_clip(tmp_path, "full")
    out = write(tmp_path / "clip.ckpt", "an earlier conversion\n")
    base = ["--model", "clip", "--output_path", out, "--no_progress"]
    assert_user_error(tool("convert_weights.py", "--input_path", tmp_path / "nowhere", *base), "nowhere", code=1)
    # truncated safetensors
    trunc = tmp_path / "trunc"
    shutil.copytree(src, trunc)
    st = trunc / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    assert_user_error(tool("convert_weights.py", "--input_path", trunc, *base), str(st), "truncated", code=1)
    # a pickle with a non-tensor global is refused, never run
    evil = tmp_path / "evil"
    os.makedirs(evil)
    shutil.copy(os.path.join(src, "config.json"), evil / "config.json")
    pwned = tmp_path / "PWNED"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {pwned}",)
    torch.save({"vision_model.post_layernorm.weight": torch.zeros(2), "x": Exploit()}, evil / "pytorch_model.bin")
    err = assert_user_error(tool("convert_weights.py", "--input_path", evil, *base),
                            str(evil / "pytorch_model.bin"), "refused", "weights_only=True", code=1)
    assert "system" in err
    assert not pwned.exists()
    assert read(out) == "an earlier conversion\n"
    # an output path that cannot be created
    blocker = write(tmp_path / "blocker", "")
    assert_user_error(tool("convert_weights.py", "--model", "clip", "--input_path", src, "--output_path",
                           os.path.join(blocker, "clip.ckpt"), "--no_progress"), "blocker", code=1)


# ---- infer.py ----------------------------------------------------------------------------------------------------
def test_infer_bad_requests_images_and_checkpoints(toy, tmp_path):
    root, out, over, ckpt = toy
    images = os.path.join(root, "images")
    write(tmp_path / "bad_images" / "text.png", "not an image\n")
    png = open(os.path.join(images, "img_000.png"), "rb").read()
    with open(tmp_path / "bad_images" / "cut.png", "wb") as f:
        f.write(png[: len(png) // 2])
    good = {"id": "a", "image": "img_000.png", "instruction": "What is the facial expression of this person?"}
    req = write(tmp_path / "req.jsonl", "\n".join([
        json.dumps(good),
        "{broken",
        json.dumps({"id": "c", "image": "img_001.png"}),
        json.dumps({"id": "d", "image": "nope.png", "instruction": "hi"}),
        json.dumps({"id": "e", "image": str(tmp_path / "bad_images" / "text.png"), "instruction": "hi"}),
        json.dumps({"id": "f", "image": str(tmp_path / "bad_images" / "cut.png"), "instruction": "hi"}),
    ]) + "\n")
    answers = write(tmp_path / "answers.jsonl", "from an earlier run\n")
    base = ["--config", CONFIG, "--ckpt", ckpt, "--set", *over]
    # fast: every input error is found before the model is built
    res = tool("infer.py", *base, "--input", req, "--image-root", images, "--output", answers)
    assert_user_error(res, "req.jsonl:2", "invalid JSON", code=2)
    assert read(answers) == "from an earlier run\n"
    for image, needle in ((tmp_path / "nope.png", "image file not found"),
                          (tmp_path / "bad_images" / "text.png", "cannot decode image"),
                          (tmp_path / "bad_images" / "cut.png", "cannot decode image")):
        assert_user_error(tool("infer.py", *base, "--image", image, "--instruction", "hi"), str(image), needle,
                          code=2)
    lines = read(req).splitlines()
    for lineno, needle in ((3, "lacks ['instruction']"), (4, "nope.png"), (5, "text.png"), (6, "cut.png")):
        one = write(tmp_path / f"one{lineno}.jsonl", lines[0] + "\n" + "\n" * (lineno - 2) + lines[lineno - 1] + "\n")
        assert_user_error(tool("infer.py", *base, "--input", one, "--image-root", images, "--output", answers),
                          f"one{lineno}.jsonl:{lineno}", needle, code=2)
    # --on-error skip: the good request is answered, the five bad ones are counted
    res = tool("infer.py", *base, "--input", req, "--image-root", images, "--output", answers, "--on-error", "skip",
               "--max-new-tokens", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "1 answers written to" in res.stdout and "5 skipped" in res.stdout
    assert "req.jsonl:2" in res.stdout and "req.jsonl:6" in res.stdout
    assert [json.loads(l)["id"] for l in read(answers).splitlines()] == ["a"]
    # slow: a checkpoint of another config, a truncated checkpoint
    kept = read(answers)
    res = tool("infer.py", *base, "adapter.num_query_tokens=4", "--input", req, "--image-root", images,
               "--output", answers, "--on-error", "skip")
    assert_user_error(res, os.path.join(ckpt, "model.ckpt"), "query_tokens", "shape", code=2)
    cut = os.path.join(root, "cut_ckpt", "step_00000001")
    shutil.copytree(ckpt, cut)
    data = open(os.path.join(cut, "model.ckpt"), "rb").read()
    with open(os.path.join(cut, "model.ckpt"), "wb") as f:
        f.write(data[: len(data) // 2])
    res = tool("infer.py", "--config", CONFIG, "--ckpt", cut, "--set", *over, "--input", req, "--image-root", images,
               "--output", answers, "--on-error", "skip")
    assert_user_error(res, os.path.join(cut, "model.ckpt"), code=2)
    assert read(answers) == kept


# ---- train.py ----------------------------------------------------------------------------------------------------
def test_train_bad_records_and_checkpoint_of_another_config(toy, tmp_path):
    root, out, over, ckpt = toy
    data = tmp_path / "humanins"
    shutil.copytree(out, data)
    jsonl = data / "toy_expr" / "train-00000.jsonl"
    lines = read(jsonl).splitlines()
    rec = json.loads(lines[2])
    del rec["task"]
    lines[2] = json.dumps(rec)
    write(jsonl, "\n".join(lines) + "\n")
    run = tmp_path / "run"
    res = tool("train.py", "--config", CONFIG, "--set", *over, f"data.train_path={data}", f"train.output_dir={run}",
               "train.max_steps=1")
    assert_user_error(res, f"{jsonl}:3", "task", code=2)
    assert not os.path.exists(run / "checkpoints")
    assert_user_error(tool("train.py", "--config", tmp_path / "nope.yaml"), "nope.yaml", code=2)
    # --resume from a checkpoint of another config: refused, the checkpoint is left as it was
    before = open(os.path.join(ckpt, "model.ckpt"), "rb").read()
    res = tool("train.py", "--config", CONFIG, "--set", *over, "adapter.num_query_tokens=4",
               f"train.output_dir={run}", "train.max_steps=1", "--resume", os.path.dirname(ckpt))
    assert_user_error(res, os.path.join(ckpt, "model.ckpt"), code=2)
    assert open(os.path.join(ckpt, "model.ckpt"), "rb").read() == before
