"""LLaMA/Vicuna conversion: config, mindformers-native names, logits parity with HF, round trips and errors."""
import json
import os

import mindspore as ms
import numpy as np
import pytest
import safetensors.numpy
import torch

from lman_ms.convert.common import CheckpointError, iter_hf_tensors
from lman_ms.convert.llama import (convert_llama_to_hf, convert_llama_to_ms, iter_llama_ms_tensors,
                                   llama_config_from_hf, llama_param_shapes, load_llama_state)
from tests.convert.hf_fixtures import tiny_llama_model

TOL = 1e-4
N_PARAMS = 2 * 9 + 3  # 9 tensors per layer + embeddings, final norm, lm_head


def _mindformers_llama(cfg):
    """mindformers LlamaForCausalLM on CPU with the settings DESIGN.md section 3 proved."""
    from mindformers.models.llama import LlamaConfig, LlamaForCausalLM

    mf = LlamaConfig(batch_size=1, seq_length=cfg.max_position_embeddings, hidden_size=cfg.hidden_size,
                     num_layers=cfg.num_hidden_layers, num_heads=cfg.num_attention_heads,
                     n_kv_heads=cfg.num_key_value_heads, intermediate_size=cfg.intermediate_size,
                     vocab_size=cfg.vocab_size, rms_norm_eps=cfg.rms_norm_eps, theta=cfg.rope_theta,
                     pad_token_id=cfg.pad_token_id, fused_rms_norm=False, use_rope_slice=True,
                     use_flash_attention=False, compute_dtype="float32", param_init_type="float32",
                     layernorm_compute_type="float32", softmax_compute_type="float32", rotary_dtype="float32")
    model = LlamaForCausalLM(mf)
    model.set_train(False)
    return model


def _logits(model, ids, seq_length):
    padded = np.zeros((1, seq_length), np.int32)  # the causal mask is built for seq_length: pad on the right
    padded[0, :ids.shape[1]] = ids
    return model(ms.Tensor(padded))[0].asnumpy().reshape(1, seq_length, -1)[:, :ids.shape[1]]


@pytest.fixture(scope="module")
def gqa_llama(tmp_path_factory):
    # 3 query heads of 8 sharing one key/value head, sharded safetensors
    return tiny_llama_model(tmp_path_factory.mktemp("llama"), sharded=True, num_key_value_heads=1)


def test_config_from_hf(gqa_llama):
    cfg = llama_config_from_hf(gqa_llama[0])
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (101, 24, 3, 1)
    assert (cfg.max_position_embeddings, cfg.rms_norm_eps, cfg.rope_theta) == (16, 1e-6, 10000.0)


def test_names_and_shapes_are_mindformers_native(gqa_llama):
    cfg = llama_config_from_hf(gqa_llama[0])
    model = _mindformers_llama(cfg)
    native = {n: tuple(p.shape) for n, p in model.parameters_and_names()}
    assert llama_param_shapes(cfg) == native
    state = load_llama_state(gqa_llama[0])
    assert {k: v.shape for k, v in state.items()} == native
    assert native["model.layers.1.attention.wk.weight"] == (8, 24)  # one kv head of 8


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
def test_logits_match_hf(gqa_llama, mode):
    ms.set_context(mode=mode)
    try:
        folder, hf = gqa_llama
        cfg = llama_config_from_hf(folder)
        model = _mindformers_llama(cfg)
        params = {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in load_llama_state(folder).items()}
        not_loaded, _ = ms.load_param_into_net(model, params, strict_load=True)
        assert not_loaded == []
        ids = np.array([[1, 17, 4, 99, 50, 23, 8]], np.int32)
        with torch.no_grad():
            ref = hf(torch.from_numpy(ids).long()).logits.numpy()
        assert np.abs(_logits(model, ids, cfg.max_position_embeddings) - ref).max() <= TOL
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.mark.parametrize("sharded,safetensors_in", [(True, True), (True, False), (False, False), (False, True)],
                         ids=["sharded_st", "sharded_bin", "single_bin", "single_st"])
def test_round_trip_is_bit_identical(tmp_path, sharded, safetensors_in):
    src, _ = tiny_llama_model(tmp_path, sharded=sharded, safetensors=safetensors_in)
    names = os.listdir(src)
    assert any(n.endswith(".index.json") for n in names) == sharded
    assert any(n.endswith(".bin") for n in names) == (not safetensors_in)
    out = str(tmp_path / "llama.ckpt")
    assert convert_llama_to_ms(src, out, progress=False)["tensors"] == N_PARAMS
    assert set(ms.load_checkpoint(out)) == set(llama_param_shapes(llama_config_from_hf(src)))
    convert_llama_to_hf(out, src, str(tmp_path / "back"), max_shard_bytes=4096)
    a = dict(iter_hf_tensors(src, False))
    b = dict(iter_hf_tensors(str(tmp_path / "back"), False))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "back" / "config.json").read_text())["model_type"] == "llama"


def test_embedding_and_head_values(gqa_llama):
    folder, hf = gqa_llama
    state = load_llama_state(folder)
    sd = hf.state_dict()
    assert np.array_equal(state["model.tok_embeddings.embedding_weight"], sd["model.embed_tokens.weight"].numpy())
    assert np.array_equal(state["model.layers.1.feed_forward.w2.weight"], sd["model.layers.1.mlp.down_proj.weight"])
    assert np.array_equal(state["model.norm_out.weight"], sd["model.norm.weight"].numpy())


def test_tied_embeddings_fill_lm_head(tmp_path):
    src, hf = tiny_llama_model(tmp_path, tie_word_embeddings=True)
    assert "lm_head.weight" not in dict(iter_hf_tensors(src, False))
    state = load_llama_state(src)
    assert np.array_equal(state["lm_head.weight"], state["model.tok_embeddings.embedding_weight"])


def test_bf16_checkpoint_upcast_and_fp16_output(tmp_path):
    src, hf = tiny_llama_model(tmp_path, dtype=torch.bfloat16)
    state = dict(iter_llama_ms_tensors(src))
    ref = hf.state_dict()["model.layers.0.self_attn.q_proj.weight"].float().numpy()
    assert state["model.layers.0.attention.wq.weight"].dtype == np.float32
    assert np.array_equal(state["model.layers.0.attention.wq.weight"], ref)
    half = dict(iter_llama_ms_tensors(src, dtype="fp16"))
    assert half["lm_head.weight"].dtype == np.float16


def test_old_rotary_buffers_are_ignored(tmp_path):
    src, _ = tiny_llama_model(tmp_path)
    path = os.path.join(src, "model.safetensors")
    tensors = safetensors.numpy.load_file(path)
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(4, np.float32)
    safetensors.numpy.save_file(tensors, path, metadata={"format": "pt"})
    assert len(load_llama_state(src)) == N_PARAMS


def test_errors_name_the_keys(tmp_path):
    src, _ = tiny_llama_model(tmp_path)
    path = os.path.join(src, "model.safetensors")
    tensors = safetensors.numpy.load_file(path)
    tensors["model.layers.1.mlp.up_proj.weight"] = np.ones((41, 24), np.float32)
    safetensors.numpy.save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"model.layers.1.mlp.up_proj.weight -> 'model.layers.1.feed_forward"
                                              r".w3.weight': checkpoint gives \(41, 24\), model expects \(40, 24\)"):
        load_llama_state(src)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    tensors["model.layers.1.mlp.extra_proj.weight"] = np.ones(3, np.float32)
    safetensors.numpy.save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        load_llama_state(src)
    assert "no mapping rule: model.layers.1.mlp.extra_proj.weight" in str(err.value)
    assert "left without a value: model.layers.1.feed_forward.w3.weight" in str(err.value)


def test_unsupported_config_is_an_error(tmp_path):
    src, _ = tiny_llama_model(tmp_path)
    with open(os.path.join(src, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["rope_scaling"] = {"type": "linear", "factor": 2.0}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="rope_scaling"):
        llama_config_from_hf(str(tmp_path / "cfg.json"))
