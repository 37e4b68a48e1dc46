"""MindIR export (tools/export.py) and the graph runner (lman_ms.infer.lite, tools/lite_infer.py) on the tiny model:
the loaded graphs reproduce the in-memory cells, and the runner's greedy tokens are the Generator's."""
import importlib.util
import json
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train"))
from toy_data import make_toy_humanins, toy_overrides  # noqa: E402

from lman_ms.config import load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTRUCTIONS = ["What is the facial expression of this person?", "Describe this image."]  # different lengths
MAX_NEW = 8
TOL = 1e-5


def _tool(name):
    """tools/NAME.py as a module (the folder is not a package; a unique module name avoids clashes)."""
    spec = importlib.util.spec_from_file_location(f"lman_tool_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random-init tiny stage-2 model saved as a .ckpt, exported by the CLI with batch size 2; the in-memory model
    (same weights) is the reference."""
    root = str(tmp_path_factory.mktemp("export"))
    out, tok = make_toy_humanins(root, n=3)
    over = toy_overrides(root, out, tok)
    cfg = load_config(os.path.join(REPO, "configs/tiny_cpu.yaml"), over)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(0)
    from lman_ms.models.lman import LMan
    model = LMan(cfg, stage=2)
    model.set_train(False)
    ckpt = os.path.join(root, "model.ckpt")
    ms.save_checkpoint(model, ckpt)
    export_dir = os.path.join(root, "export")
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"), "--config",
                          "configs/tiny_cpu.yaml", "--ckpt", ckpt, "--output_dir", export_dir, "--batch-size", "2",
                          "--set", *over], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    images = [os.path.join(root, "images", f"img_00{i}.png") for i in range(3)]
    return dict(root=root, cfg=cfg, over=over, model=model, ckpt=ckpt, dir=export_dir, images=images)


@pytest.fixture(scope="module")
def predictor(exported):
    from lman_ms.data.conversation import template_from_config
    from lman_ms.infer.predictor import LManPredictor
    cfg = exported["cfg"]
    return LManPredictor(cfg, model=exported["model"], template=template_from_config(cfg))


@pytest.fixture(scope="module")
def runner(exported):
    from lman_ms.infer.lite import LiteRunner
    return LiteRunner(exported["dir"], backend="graphcell")


def _graph(exported, name):
    return nn.GraphCell(ms.load(os.path.join(exported["dir"], f"{name}.mindir")))


def _mindir_params(path):
    from mindspore.train.mind_ir_pb2 import ModelProto
    proto = ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return {p.name[p.name.find(":") + 1:]: p.raw_data for p in proto.graph.parameter}


def _maxdiff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_export_folder_manifest_config_and_shared_weights(exported):
    d, cfg = exported["dir"], exported["cfg"]
    from lman_ms.infer.export import load_manifest
    m = load_manifest(d)
    assert sorted(os.listdir(d)) == ["clip_tokenizer", "config.yaml", "decode.mindir", "export.json",
                                     "prefill.mindir", "tokenizer", "visual_prefix.mindir"]
    # the resolved config is recorded beside the graphs and reloads to the same config
    assert load_config(os.path.join(d, "config.yaml")).to_dict() == cfg.to_dict()
    assert m["checkpoint"] == os.path.abspath(exported["ckpt"])
    b, p, c, h = m["batch_size"], m["prefill_len"], m["cache_len"], cfg.llm.hidden_size
    assert (b, c, m["visual_len"]) == (2, cfg.llm.max_position_embeddings, len(m["prefix_ids"]) + 8)
    assert p == m["visual_len"] + 64
    g = m["graphs"]
    assert [(s["name"], s["shape"], s["dtype"]) for s in g["visual_prefix"]["inputs"]] == [
        ("pixel_values", [2, 3, 64, 64], "float32"), ("instruction_ids", [2, 16], "int32"),
        ("instruction_mask", [2, 16], "float32"), ("prefix_ids", [1, len(m["prefix_ids"])], "int32")]
    assert g["visual_prefix"]["outputs"][0]["shape"] == [2, m["visual_len"], h]
    assert [s["shape"] for s in g["prefill"]["inputs"]] == [[b, p], [b, p, h], [b, p], [b, p], [b, p]]
    cache = [2, 2, 4, c, 16]  # layers, batch, kv heads, slots, head dim
    assert [s["shape"] for s in g["decode"]["inputs"]] == [[b, 1], [b, 1], cache, cache, [b, c], []]
    assert g["decode"]["outputs"][0] == {"name": "logits", "shape": [2, cfg.llm.vocab_size], "dtype": "float32"}
    # prefill and decode carry the same LLM weights, byte for byte, and they are the checkpoint's
    pre, dec = (_mindir_params(os.path.join(d, f"{n}.mindir")) for n in ("prefill", "decode"))
    assert pre.keys() == dec.keys() and len(pre) == m["shared_weights"]["parameters"]
    assert all(pre[k] == dec[k] for k in pre)
    llm = {q.name: q.asnumpy() for q in exported["model"].llm.get_parameters()}
    assert all(np.frombuffer(pre[k], np.float32).tolist() == llm[k].ravel().tolist() for k in pre)


def test_graphs_reproduce_the_eager_cells(exported, runner, predictor):
    """visual prefix, prefill (logits + caches) and one decode step: loaded MindIR vs the in-memory cells."""
    from lman_ms.infer.kv_cache import DecodeCell, PrefillCell
    m, model = runner.manifest, exported["model"]
    pixels, ins_ids, ins_mask = runner.preprocess(exported["images"][:2], INSTRUCTIONS)
    prefix_ids = np.asarray([m["prefix_ids"]], np.int32)
    inputs = [Tensor(x) for x in (pixels, ins_ids, ins_mask, prefix_ids)]
    graph_prefix = _graph(exported, "visual_prefix")(*inputs).asnumpy()
    eager_prefix = predictor.prefix_cell(*inputs).asnumpy()
    diffs = {"visual_prefix": _maxdiff(graph_prefix, eager_prefix)}

    # the prefill inputs the runner builds: [pad ; visual prefix ; prompt], left-padded to prefill_len
    p, b = m["prefill_len"], 2
    prompts = [runner.prompt_ids(t) for t in INSTRUCTIONS]
    ids, embeds = np.zeros((b, p), np.int32), np.zeros((b, p, m["hidden_size"]), np.float32)
    emask, amask = np.zeros((b, p), np.int32), np.zeros((b, p), np.int32)
    v = eager_prefix.shape[1]
    for r, toks in enumerate(prompts):
        start = p - v - len(toks)
        embeds[r, start:start + v], emask[r, start:start + v] = eager_prefix[r], 1
        ids[r, start + v:], amask[r, start:] = toks, 1
    pos = np.maximum(np.cumsum(amask, 1) - 1, 0).astype(np.int32)
    args = [Tensor(x) for x in (ids, embeds, emask, amask, pos)]
    g_logits, g_keys, g_values = _graph(exported, "prefill")(*args)
    e_logits, e_keys, e_values = PrefillCell(model.llm, m["cache_len"])(*args)
    diffs["prefill_logits"] = _maxdiff(g_logits.asnumpy(), e_logits.asnumpy())
    diffs["prefill_cache"] = max(_maxdiff(g_keys.asnumpy(), e_keys.asnumpy()),
                                 _maxdiff(g_values.asnumpy(), e_values.asnumpy()))

    tokens = e_logits.asnumpy().argmax(-1).astype(np.int32).reshape(b, 1)
    cache_mask = np.zeros((b, m["cache_len"]), np.int32)
    cache_mask[:, :p], cache_mask[:, p] = amask, 1
    step = [Tensor(tokens), Tensor(amask.sum(1, keepdims=True).astype(np.int32)), e_keys, e_values,
            Tensor(cache_mask), Tensor(p, ms.int32)]
    g_out = _graph(exported, "decode")(*step)
    e_out = DecodeCell(model.llm, m["cache_len"])(*step)
    diffs["decode_logits"] = _maxdiff(g_out[0].asnumpy(), e_out[0].asnumpy())
    diffs["decode_cache"] = max(_maxdiff(g_out[1].asnumpy(), e_out[1].asnumpy()),
                                _maxdiff(g_out[2].asnumpy(), e_out[2].asnumpy()))
    print("max abs diff graph vs eager:", json.dumps(diffs))
    assert all(d <= TOL for d in diffs.values()), diffs
    assert np.abs(e_logits.asnumpy()).max() > 0.01  # not a trivially zero comparison


def test_runner_greedy_tokens_equal_the_generator(exported, runner, predictor):
    """3 requests on batch-2 graphs (a full batch, then one padded): the same tokens and answers as
    LManPredictor (Generator with its own bucketed prompt width and cache)."""
    images = exported["images"]
    instructions = INSTRUCTIONS + ["Find every face."]
    out = runner.answer_ids(images, instructions, max_new_tokens=MAX_NEW)
    prefix = runner.visual_prefix(*runner.preprocess(images, instructions))
    ref = predictor.generator.generate(input_ids=[runner.prompt_ids(t) for t in instructions],
                                       prefix_embeds=predictor.prefix_cell(*[Tensor(x) for x in (
                                           *runner.preprocess(images, instructions),
                                           np.asarray([runner.manifest["prefix_ids"]], np.int32))]).asnumpy(),
                                       max_new_tokens=MAX_NEW, eos_token_id=predictor.tok.eos_id,
                                       pad_token_id=predictor.tok.pad_id, output_scores=True)
    assert out.sequences == ref.sequences and out.finished == ref.finished
    assert all(len(s) >= 1 for s in out.sequences)
    # step logits (first chunk of 2) agree with the Generator's to float rounding
    mine = runner.generate([runner.prompt_ids(t) for t in instructions[:2]], prefix[:2], MAX_NEW,
                           output_scores=True, eos_token_id=predictor.tok.eos_id, pad_token_id=predictor.tok.pad_id)
    steps = min(len(mine.scores), len(ref.scores))
    score_diff = max(_maxdiff(mine.scores[i], ref.scores[i][:2]) for i in range(steps))
    print("max abs diff runner vs Generator step logits:", score_diff)
    assert score_diff <= TOL
    assert runner.answer(images, instructions, max_new_tokens=MAX_NEW) == \
        predictor.answer(images, instructions, max_new_tokens=MAX_NEW)


def test_runner_rejects_too_long_requests(runner):
    prefix = np.zeros((1, runner.manifest["visual_len"], runner.manifest["hidden_size"]), np.float32)
    with pytest.raises(ValueError, match="exceeds the exported prefill length"):
        runner.generate([[5] * 65], prefix, 2)
    with pytest.raises(ValueError, match="exceeds the exported cache length"):
        runner.generate([[5]], prefix, runner.cache_len)


def test_script_runs_the_graphcell_backend(exported, predictor):
    res = subprocess.run(["bash", os.path.join(REPO, "scripts", "run_lite_infer.sh"), exported["dir"],
                          exported["images"][0], INSTRUCTIONS[0], "--backend", "graphcell", "--max-new-tokens",
                          str(MAX_NEW)], capture_output=True, text=True, timeout=900, cwd=REPO,
                         env={**os.environ, "PYTHON": sys.executable})
    assert res.returncode == 0, res.stderr[-3000:]
    expected = predictor.answer(exported["images"][:1], INSTRUCTIONS[:1], max_new_tokens=MAX_NEW)[0]
    assert res.stdout.rstrip("\n") == expected


def test_cli_request_file(exported, runner, tmp_path):
    req = tmp_path / "req.jsonl"
    req.write_text("".join(json.dumps({"id": f"r{i}", "image": os.path.basename(im), "instruction": t}) + "\n"
                           for i, (im, t) in enumerate(zip(exported["images"], INSTRUCTIONS + ["Hi."]))))
    ans = tmp_path / "ans.jsonl"
    assert _tool("lite_infer").main(["--export_dir", exported["dir"], "--backend", "graphcell", "--input", str(req),
                                     "--image-root", os.path.dirname(exported["images"][0]), "--output", str(ans),
                                     "--max-new-tokens", str(MAX_NEW)]) == 0
    rows = [json.loads(line) for line in ans.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["r0", "r1", "r2"]
    assert [r["answer"] for r in rows] == runner.answer(exported["images"], INSTRUCTIONS + ["Hi."], MAX_NEW)


def test_lite_backend_equals_graphcell(exported, runner):
    pytest.importorskip("mindspore_lite")
    from lman_ms.infer.lite import LiteRunner
    lite = LiteRunner(exported["dir"], backend="lite")
    assert lite.answer_ids(exported["images"], INSTRUCTIONS + ["Hi."], MAX_NEW).sequences == \
        runner.answer_ids(exported["images"], INSTRUCTIONS + ["Hi."], MAX_NEW).sequences


def test_lite_missing_is_a_clear_error(exported, capsys):
    if importlib.util.find_spec("mindspore_lite") is not None:
        pytest.skip("mindspore_lite is installed here")
    rc = _tool("lite_infer").main(["--export_dir", exported["dir"], "--image", exported["images"][0],
                                   "--instruction", "hi", "--backend", "lite"])
    assert rc != 0 and "mindspore_lite is not installed" in capsys.readouterr().err


def test_bad_inputs_are_named(exported, tmp_path, capsys):
    export = _tool("export")
    over = exported["over"]
    missing = tmp_path / "nowhere.ckpt"
    assert export.main(["--config", "configs/tiny_cpu.yaml", "--ckpt", str(missing), "--output_dir",
                        str(tmp_path / "out"), "--set", *over]) == 2
    assert f"{missing}: no checkpoint there" in capsys.readouterr().err
    assert export.main(["--config", "configs/tiny_cpu.yaml", "--ckpt", exported["ckpt"], "--output_dir",
                        str(tmp_path / "out"), "--set", *over, "llm.bogus=1"]) == 2
    assert "unknown config key(s): llm.bogus" in capsys.readouterr().err
    assert export.main(["--config", str(tmp_path / "none.yaml"), "--ckpt", exported["ckpt"], "--output_dir",
                        str(tmp_path / "out")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    lite_infer = _tool("lite_infer")
    args = ["--image", exported["images"][0], "--instruction", "hi", "--backend", "graphcell"]
    assert lite_infer.main(["--export_dir", str(tmp_path), *args]) == 2
    assert "no export.json" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads(open(os.path.join(exported["dir"], "export.json")).read())
    del manifest["prefill_len"]
    (broken / "export.json").write_text(json.dumps(manifest))
    assert lite_infer.main(["--export_dir", str(broken), *args]) == 2
    assert "missing key(s) ['prefill_len']" in capsys.readouterr().err
    assert lite_infer.main(["--export_dir", exported["dir"], "--image", str(tmp_path / "no.png"),
                            "--instruction", "hi", "--backend", "graphcell"]) == 2
    assert "no.png: file not found" in capsys.readouterr().err
