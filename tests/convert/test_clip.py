"""CLIP weight conversion: names, transforms, HF -> MindSpore -> HF round trips and the errors of bad checkpoints."""
import json
import os

import mindspore as ms
import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers

from lman_ms.convert.clip import (clip_configs_from_hf, load_text_weights, load_tower_checkpoint, load_vision_weights,
                                  text_map, vision_map)
from lman_ms.convert.clip_checkpoint import convert_clip_to_hf, convert_clip_to_ms
from lman_ms.convert.common import CheckpointError, iter_hf_tensors
from lman_ms.models.text import CLIPTextEncoder
from lman_ms.models.vision import CLIPVisionEncoder
from tests.convert.hf_fixtures import TEXT, VISION, tiny_clip, tiny_clip_model

# 3 vision layers x 12 tensors + cls, pos, patch, norm_pre x2, norm x2; 2 text layers x 16 + 2 embeddings +
# final norm x2 + text_projection; visual_projection and logit_scale
N_VISION, N_TEXT = 3 * 12 + 7, 2 * 16 + 5
N_CLIP_MS = N_VISION + N_TEXT + 2


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"), "full")


def _hf(folder):
    return dict(iter_hf_tensors(folder, progress=False))


def test_config_reading(clip_dir):
    arch, vision, text, _ = clip_configs_from_hf(clip_dir)
    assert arch == "CLIPModel"
    assert (vision.hidden_size, vision.num_attention_heads, vision.image_size, vision.patch_size) == (24, 3, 30, 6)
    assert (text.vocab_size, text.eos_token_id, text.projection_dim) == (99, 98, 20)


def test_old_config_without_defaults(tmp_path):
    # configs written by old transformers versions list only non-default values (HF defaults: ViT-B/32 sizes)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": {"patch_size": 14},
                                                      "text_config": {"eos_token_id": 2}}))
    _, vision, text, _ = clip_configs_from_hf(str(tmp_path))
    assert (vision.hidden_size, vision.patch_size, vision.num_hidden_layers) == (768, 14, 12)
    assert (text.hidden_size, text.eos_token_id, text.projection_dim) == (512, 2, 512)


def test_not_clip_is_an_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="'llama' is not a CLIP model"):
        clip_configs_from_hf(str(tmp_path))


def test_ms_checkpoint_names_and_transforms(clip_dir, tmp_path):
    out = str(tmp_path / "clip.ckpt")
    assert convert_clip_to_ms(clip_dir, out, progress=False)["tensors"] == N_CLIP_MS
    ckpt = {k: v.asnumpy() for k, v in ms.load_checkpoint(out).items()}
    hf = _hf(clip_dir)
    layer = "vision_model.encoder.layers.1.self_attn."
    qkv = np.concatenate([hf[layer + f"{x}_proj.weight"] for x in "qkv"], axis=0)
    assert np.array_equal(ckpt["vision_model.blocks.1.attn.qkv.weight"], qkv)
    assert ckpt["vision_model.cls_token"].shape == (1, 1, 24)
    assert np.array_equal(ckpt["vision_model.cls_token"][0, 0], hf["vision_model.embeddings.class_embedding"])
    assert ckpt["vision_model.pos_embed"].shape == (1, 26, 24)  # (30 // 6)^2 + 1 positions
    assert np.array_equal(ckpt["vision_model.norm_pre.gamma"], hf["vision_model.pre_layrnorm.weight"])
    assert np.array_equal(ckpt["text_model.encoder.layers.1.mlp.fc2.weight"],
                          hf["text_model.encoder.layers.1.mlp.fc2.weight"])
    assert np.array_equal(ckpt["text_model.text_projection.weight"], hf["text_projection.weight"])
    assert ckpt["logit_scale"].shape == (1,) and ckpt["logit_scale"][0] == hf["logit_scale"]


def test_converted_names_match_the_towers(clip_dir, tmp_path):
    out = str(tmp_path / "clip.ckpt")
    convert_clip_to_ms(clip_dir, out, progress=False)
    names = set(ms.load_checkpoint(out))
    _, vision, text, _ = clip_configs_from_hf(clip_dir)
    tower_names = {"vision_model." + n for n, _ in CLIPVisionEncoder(vision).parameters_and_names()}
    tower_names |= {"text_model." + n for n, _ in CLIPTextEncoder(text).parameters_and_names()}
    assert names == tower_names | {"visual_projection.weight", "logit_scale"}


@pytest.mark.parametrize("safetensors_in", [True, False], ids=["safetensors", "bin"])
def test_round_trip_is_bit_identical(tmp_path, safetensors_in):
    # 2KB shards: q, k and v of one layer land in different files
    src, model = tiny_clip_model(tmp_path, "full", safetensors=safetensors_in, max_shard_size="2KB")
    assert len(os.listdir(src)) > 4
    convert_clip_to_ms(src, str(tmp_path / "c.ckpt"), progress=False)
    convert_clip_to_hf(str(tmp_path / "c.ckpt"), src, str(tmp_path / "back"))
    a, b = _hf(src), _hf(str(tmp_path / "back"))
    assert sorted(a) == sorted(b)
    assert all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)
    # and transformers loads the folder back into an identical model
    again = transformers.CLIPModel.from_pretrained(str(tmp_path / "back")).state_dict()
    assert all(torch.equal(again[k], v) for k, v in model.state_dict().items())


def test_bf16_round_trip(tmp_path):
    src = str(tmp_path / "bf16")
    _, model = tiny_clip_model(tmp_path, "vision")
    model.to(torch.bfloat16).save_pretrained(src)
    convert_clip_to_ms(src, str(tmp_path / "v.ckpt"), dtype="bf16", progress=False)
    ckpt = ms.load_checkpoint(str(tmp_path / "v.ckpt"))
    assert ckpt["vision_model.blocks.0.attn.qkv.weight"].dtype == ms.bfloat16
    convert_clip_to_hf(str(tmp_path / "v.ckpt"), src, str(tmp_path / "back"), dtype="bf16")
    ref = transformers.CLIPVisionModel.from_pretrained(src, torch_dtype=torch.bfloat16).state_dict()
    got = transformers.CLIPVisionModel.from_pretrained(str(tmp_path / "back"), torch_dtype=torch.bfloat16).state_dict()
    assert all(got[k].dtype == torch.bfloat16 and torch.equal(got[k], ref[k]) for k in ref)


def test_vision_only_folders(tmp_path):
    for kind, n in (("vision", N_VISION), ("vision_proj", N_VISION + 1)):
        src = tiny_clip(tmp_path, kind)
        out = str(tmp_path / f"{kind}.ckpt")
        assert convert_clip_to_ms(src, out, progress=False)["tensors"] == n
        convert_clip_to_hf(out, src, str(tmp_path / f"{kind}_back"))
        a, b = _hf(src), _hf(str(tmp_path / f"{kind}_back"))
        assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def _rewrite(folder, change):
    path = os.path.join(folder, "model.safetensors")
    tensors = safetensors.numpy.load_file(path)
    change(tensors)
    safetensors.numpy.save_file(tensors, path, metadata={"format": "pt"})


def test_unmapped_key_is_an_error(tmp_path):
    src = tiny_clip(tmp_path, "vision")
    _rewrite(src, lambda t: t.update({"vision_model.encoder.layers.0.adapter.weight": np.ones(2, np.float32)}))
    with pytest.raises(CheckpointError, match=r"1 key\(s\) with no mapping rule: "
                                              r"vision_model.encoder.layers.0.adapter.weight"):
        convert_clip_to_ms(src, str(tmp_path / "x.ckpt"), progress=False)
    assert not os.path.exists(tmp_path / "x.ckpt")


def test_missing_parameter_is_an_error(tmp_path):
    src = tiny_clip(tmp_path, "vision")
    _rewrite(src, lambda t: t.pop("vision_model.post_layernorm.bias"))
    with pytest.raises(CheckpointError, match=r"left without a value: vision_model.norm.beta"):
        convert_clip_to_ms(src, str(tmp_path / "x.ckpt"), progress=False)
    with pytest.raises(CheckpointError, match=r"left without a value: norm.beta"):
        CLIPVisionEncoder.from_hf(src)


def test_wrong_shape_is_an_error(tmp_path):
    src = tiny_clip(tmp_path, "vision")
    _rewrite(src, lambda t: t.update({"vision_model.encoder.layers.2.mlp.fc1.weight": np.ones((41, 24), np.float32)}))
    with pytest.raises(CheckpointError, match=r"vision_model.encoder.layers.2.mlp.fc1.weight -> 'blocks.2.mlp.fc1."
                                              r"weight': checkpoint gives \(41, 24\), model expects \(40, 24\)"):
        CLIPVisionEncoder.from_hf(src)


def test_text_only_folder_has_no_vision_tower(tmp_path):
    with pytest.raises(CheckpointError, match="no vision tower"):
        CLIPVisionEncoder.from_hf(tiny_clip(tmp_path, "text"))


def test_maps_cover_every_hf_key(clip_dir):
    """Every HF tensor of each tower has a rule (the text map is the identity after the prefix)."""
    hf = _hf(clip_dir)
    vision = [k for k in hf if k.startswith("vision_model.")]
    text = [k for k in hf if k.startswith("text_model.") or k == "text_projection.weight"]
    assert len(list(vision_map().to_ms((k, hf[k]) for k in vision))) == N_VISION
    renamed = dict(text_map().to_ms((k, hf[k]) for k in text))
    assert sorted(renamed) == sorted(k.replace("text_model.", "", 1) for k in text)
    assert VISION["num_hidden_layers"] == 3 and TEXT["num_hidden_layers"] == 2


def test_converted_checkpoint_loads_into_the_towers(clip_dir, tmp_path):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    out = str(tmp_path / "clip.ckpt")
    convert_clip_to_ms(clip_dir, out, progress=False)
    _, vision_cfg, text_cfg, _ = clip_configs_from_hf(clip_dir)
    vision, text = CLIPVisionEncoder(vision_cfg), CLIPTextEncoder(text_cfg)
    assert load_tower_checkpoint(vision, out, "vision_model.") == N_VISION
    assert load_tower_checkpoint(text, out, "text_model.") == N_TEXT
    pixels = ms.Tensor(np.random.default_rng(0).standard_normal((1, 3, 30, 30)).astype(np.float32))
    assert np.array_equal(vision(pixels)[-1].asnumpy(), CLIPVisionEncoder.from_hf(clip_dir)(pixels)[-1].asnumpy())
    ids = ms.Tensor(np.array([[97, 4, 98]], np.int32))
    assert np.array_equal(text(ids)[1].asnumpy(), CLIPTextEncoder.from_hf(clip_dir)(ids)[1].asnumpy())
    with pytest.raises(CheckpointError, match="left without a value"):
        load_tower_checkpoint(CLIPVisionEncoder(vision_cfg), out, "text_model.")


def test_hf_weights_load_into_existing_towers(clip_dir):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    _, vision_cfg, text_cfg, _ = clip_configs_from_hf(clip_dir)
    vision, text = CLIPVisionEncoder(vision_cfg), CLIPTextEncoder(text_cfg)
    assert load_vision_weights(vision, clip_dir) == N_VISION
    assert load_text_weights(text, clip_dir) == N_TEXT
    hf = _hf(clip_dir)
    assert np.array_equal(vision.pos_embed.asnumpy()[0], hf["vision_model.embeddings.position_embedding.weight"])
    assert np.array_equal(text.text_projection.weight.asnumpy(), hf["text_projection.weight"])
