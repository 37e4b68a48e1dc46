import importlib.util
import json
import os

import numpy as np
import pytest

from lman_ms.eval.probes import (LocationSet, box_iou, chance, feature_sites, format_table, largest_box,
                                 load_location_set, probe_all, probe_site, score)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny_cpu.yaml")
GRID = 12            # a 12 x 12 token grid, as a ViT's patches
SIDE = 0.4           # every square is 0.4 x 0.4 of the picture: its corners are then linear in its coverage map


def _squares(n, seed):
    """Pictures holding one square at a random place: (coverage per grid cell (n, GRID * GRID), boxes (n, 4))."""
    rng = np.random.default_rng(seed)
    x1, y1 = rng.uniform(0, 1 - SIDE, n), rng.uniform(0, 1 - SIDE, n)
    boxes = np.stack([x1, y1, x1 + SIDE, y1 + SIDE], 1)
    edges = np.arange(GRID + 1) / GRID

    def cover(a, b):  # (n, GRID): overlap of [a, b] with each cell, in cells
        return np.clip(np.minimum(b[:, None], edges[None, 1:]) - np.maximum(a[:, None], edges[None, :-1]), 0,
                       None) * GRID
    cov = cover(boxes[:, 1], boxes[:, 3])[:, :, None] * cover(boxes[:, 0], boxes[:, 2])[:, None, :]
    return cov.reshape(n, -1), boxes


def _token_features(cov, width, seed):
    """Each grid cell becomes a token of ``width`` numbers (the same random embedding of its coverage for every
    cell, plus noise): the location is in WHICH token is lit, as in a ViT's patch tokens."""
    embed = np.random.default_rng(99).normal(size=(1, 1, width))     # one embedding for both splits
    rng = np.random.default_rng(seed)
    tokens = cov[:, :, None] * embed + 0.05 * rng.normal(size=(*cov.shape, width))
    return tokens.reshape(len(cov), -1), tokens.mean(1)           # flattened tokens, and pooled over tokens


def _set(kind, y, size=(200.0, 100.0), ref=None):
    n = len(y)
    labelled = np.ones((n, 1 if kind == "box" else y.shape[1] // 2), bool)
    return LocationSet("synthetic", kind, np.zeros((n, 3, 8, 8), np.float32), np.zeros((n, 4), np.int32),
                       np.zeros((n, 4), np.float32), y, labelled, np.tile(np.asarray(size), (n, 1)), ref)


@pytest.fixture(scope="module")
def squares():
    cov_tr, box_tr = _squares(300, 0)
    cov_te, box_te = _squares(100, 1)
    tok_tr, pool_tr = _token_features(cov_tr, 6, 2)
    tok_te, pool_te = _token_features(cov_te, 6, 3)
    return {"tokens": (tok_tr, tok_te), "pooled": (pool_tr, pool_te)}, (box_tr, box_te)


@pytest.mark.parametrize("fit", ["ridge", "mlp"])
def test_tokens_that_keep_location_probe_well_and_pooled_tokens_do_not(squares, fit):
    feats, (box_tr, box_te) = squares
    train, test = _set("box", box_tr), _set("box", box_te)
    out = probe_all({k: v[0] for k, v in feats.items()}, {k: v[1] for k, v in feats.items()}, train, test,
                    dim=32, fit=fit)
    assert out["tokens"]["hit50"] >= 0.9, out
    # pooling over tokens keeps how much is lit (the same for every square), not where: no better than chance
    assert out["pooled"]["hit50"] <= out["chance"]["hit50"] + 0.1, out
    assert out["chance"]["hit50"] < 0.5, out


def test_joint_probe_scores_pck_against_the_reference_length(squares):
    feats, (box_tr, box_te) = squares
    # two "joints": the square's top-left and bottom-right corners; PCK reference 20 px on a 200 x 100 picture
    train = _set("joints", box_tr, ref=np.full(len(box_tr), 20.0))
    test = _set("joints", box_te, ref=np.full(len(box_te), 20.0))
    good = probe_site(feats["tokens"][0], feats["tokens"][1], train, test, dim=32)
    bad = probe_site(feats["pooled"][0], feats["pooled"][1], train, test, dim=32)
    base = chance(train, test)
    assert good["pck"] >= 0.9 > base["pck"] + 0.3, (good, base)
    assert bad["pck"] <= base["pck"] + 0.1, (bad, base)


def test_scores_by_hand():
    iou = box_iou(np.array([[0, 0, 2, 2], [2, 2, 0, 0], [0, 0, 1, 1]], float),
                  np.array([[0, 0, 2, 2], [1, 1, 3, 3], [2, 2, 3, 3]], float))
    np.testing.assert_allclose(iou, [1.0, 1 / 7, 0.0])          # corners put in order first
    assert largest_box([[0, 0, 1, 1], [0, 0, 3, 2], [0, 0, 2, 2]]) == [0, 0, 3, 2]
    # one joint 10 px off on a 100 x 100 picture: inside 0.5 x 30 px, outside 0.5 x 10 px; unlabelled ignored
    data = _set("joints", np.array([[0.5, 0.5, 0.2, 0.2]]), size=(100.0, 100.0), ref=np.array([30.0]))
    data.labelled[0, 1] = False
    assert score("joints", np.array([[0.6, 0.5, 0.9, 0.9]]), data) == {"pck": 1.0}
    data.ref[:] = 10.0
    assert score("joints", np.array([[0.6, 0.5, 0.9, 0.9]]), data) == {"pck": 0.0}


def test_feature_sites_of_a_tiny_random_model():
    import mindspore as ms
    from lman_ms.config import load_config
    from lman_ms.models.lman import LMan
    cfg = load_config(TINY, ["train.stage=2"])
    ms.set_seed(0)
    model = LMan(cfg, stage=2)
    model.set_train(False)
    n, t = 3, cfg.adapter.num_instruction_tokens
    images = np.random.default_rng(0).normal(size=(n, 3, 64, 64)).astype(np.float32)
    feats = feature_sites(model, images, np.zeros((n, t), np.int32), np.zeros((n, t), np.float32), batch_size=2)
    patches, dv = (64 // cfg.vision.patch_size) ** 2, cfg.vision.hidden_size
    nq = cfg.adapter.num_query_tokens
    assert {k: v.shape for k, v in feats.items()} == {
        "vit_patches": (n, patches * dv), "vit_for_ca1": (n, (1 + patches) * dv), "vit_for_ca2": (n, (1 + patches) * dv),
        "adapter_queries": (n, nq * cfg.adapter.hidden_size), "projected": (n, nq * cfg.llm.hidden_size)}
    # 4 ViT layers, 2 adapter layers: layer 2 reads V_4, the last state, whose patch part is site (a)
    np.testing.assert_array_equal(feats["vit_for_ca2"][:, dv:], feats["vit_patches"])
    assert not np.allclose(feats["vit_for_ca1"], feats["vit_for_ca2"])


@pytest.fixture(scope="module")
def synth_humanins(tmp_path_factory):
    from lman_ms.data.synth import build_synth_humanins, make_synth
    root = tmp_path_factory.mktemp("probe_synth")
    make_synth(str(root / "synth"), 10, 0, sources=("coco", "mpii"))
    build_synth_humanins(str(root / "synth"), str(root / "humanins"))
    return str(root / "humanins")


def test_location_sets_read_one_person_per_picture(synth_humanins):
    boxes = load_location_set(synth_humanins, "test", "person_boxes", 32, 4)
    joints = load_location_set(synth_humanins, "test", "joints", 32, 4)
    assert boxes.images.shape == (len(boxes.y), 3, 32, 32) and boxes.y.shape[1] == 4
    assert len(set(boxes.ids)) == len(boxes.ids) and ((boxes.y >= 0) & (boxes.y <= 1)).all()
    assert joints.y.shape[1] == 32 and (joints.ref > 0).all()      # 16 MPII joints; head size from head_boxes
    with pytest.raises(ValueError, match="unknown probe target"):
        load_location_set(synth_humanins, "test", "elbows", 32, 4)
    with pytest.raises(ValueError, match=r"no test records of tasks \['face_detection'\]"):
        load_location_set(synth_humanins, "test", "face_boxes", 32, 4)


def test_cli_probes_a_random_model_and_writes_the_table(synth_humanins, tmp_path):
    spec = importlib.util.spec_from_file_location("probe_location", os.path.join(ROOT, "tools", "probe_location.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    main = tool.main
    out = tmp_path / "probes.json"
    assert main(["--humanins", synth_humanins, "--config", TINY, "--checkpoint", "random=",
                 "--no-instruction", "--dim", "8", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["kinds"] == {"random": "random"}
    for target in ("person_boxes", "joints"):
        sites = result["results"]["random"][target]
        assert set(sites) == {"vit_patches", "vit_for_ca1", "vit_for_ca2", "adapter_queries", "projected", "chance"}
        assert all(0.0 <= v <= 1.0 for s in sites.values() for v in s.values())
    table = (tmp_path / "probes.md").read_text()
    assert "(a) ViT patch tokens" in table and "person_boxes @ random" in table and "chance" in table
    # how well one token's content says where it is, for V_0 and the states the adapter reads (V_2, V_4)
    where = result["results"]["random"]["token_position"]
    assert set(where) == {"V_0", "V_2", "V_4"} and all(v["r2_x"] <= 1.0 for v in where.values())
    assert "| V_2 |" in table
    with pytest.raises(SystemExit):
        main(["--humanins", synth_humanins, "--checkpoint", "random"])           # no '='


def test_token_position_r2_reads_sincos_positions_and_not_small_random_ones():
    """With sin-cos position embeddings a token's content gives its column and row; with the small random init of
    HF's CLIP (std 0.02 beside patch tokens of norm ~1) hardly at all: what the adapter's cross-attention can read."""
    import mindspore as ms
    from lman_ms.config import load_config
    from lman_ms.eval.probes import token_position_r2
    from lman_ms.train.visual_warmup import VisualPath
    rng = np.random.default_rng(0)      # flat backgrounds with a little texture, as SynthHuman's mostly are
    images = (rng.normal(size=(16, 3, 1, 1)) + 0.2 * rng.normal(size=(16, 3, 64, 64))).astype(np.float32)
    r2 = {}
    for init in ("normal", "sincos"):
        ms.set_seed(0)
        model = VisualPath(load_config(TINY, [f"vision.position_embedding_init={init}"]))
        model.set_train(False)
        r2[init] = token_position_r2(model, images)
    assert min(min(v.values()) for v in r2["sincos"].values()) > 0.8, r2
    assert max(max(v.values()) for v in r2["normal"].values()) < 0.5, r2


def test_table_marks_missing_sites():
    results = {"stage1": {"joints": {"vit_patches": {"pck": 0.5}, "chance": {"pck": 0.1}}},
               "stage2": {"joints": {"vit_patches": {"pck": 0.6}, "projected": {"pck": 0.2}, "chance": {"pck": 0.1}}}}
    table = format_table(results, {"joints": "joints"})
    row = next(line for line in table.splitlines() if line.startswith("| (d)"))
    assert row == "| (d) projected visual tokens | n/a | 0.200 |"
