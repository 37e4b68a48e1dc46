"""The query adapter implements eq. (2) exactly; multi_grained and instruction_aware behave as the ablations say."""
import numpy as np
import mindspore as ms
import pytest

from lman_ms.config import load_config
from lman_ms.models.adapter import QueryAdapter


def _ln(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _attn(p, prefix, x, kv, heads, mask=None):
    d = x.shape[-1]
    hd = d // heads
    lin = lambda t, n: t @ p[f"{prefix}.{n}.weight"].T + p[f"{prefix}.{n}.bias"]
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, hd).transpose(0, 2, 1, 3)
    q, k, v = split(lin(x, "q_proj") * hd ** -0.5), split(lin(kv, "k_proj")), split(lin(kv, "v_proj"))
    s = q @ k.transpose(0, 1, 3, 2)
    if mask is not None:
        s = s + mask
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    o = (s @ v).transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], d)
    return lin(o, "out_proj")


def _layer_ref(p, k, x, v, heads, mask):
    """Eq. (2) for layer k in NumPy: SA_k, CA_k(., V_2k, V_2k), FFN_k, pre-LN with residuals."""
    pre = f"layers.{k}"
    x = x + _attn(p, f"{pre}.self_attn", _ln(x, p[f"{pre}.layer_norm1.weight"], p[f"{pre}.layer_norm1.bias"]),
                  _ln(x, p[f"{pre}.layer_norm1.weight"], p[f"{pre}.layer_norm1.bias"]), heads, mask)
    kv = _ln(v, p[f"{pre}.layer_norm_kv.weight"], p[f"{pre}.layer_norm_kv.bias"])
    x = x + _attn(p, f"{pre}.crossattention",
                  _ln(x, p[f"{pre}.layer_norm_cross.weight"], p[f"{pre}.layer_norm_cross.bias"]), kv, heads)
    h = _ln(x, p[f"{pre}.layer_norm2.weight"], p[f"{pre}.layer_norm2.bias"]) @ p[f"{pre}.mlp.fc1.weight"].T \
        + p[f"{pre}.mlp.fc1.bias"]
    h = h * (1 / (1 + np.exp(-1.702 * h)))
    return x + h @ p[f"{pre}.mlp.fc2.weight"].T + p[f"{pre}.mlp.fc2.bias"]


def _inputs(cfg, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    n_states = cfg.vision.num_hidden_layers + 1
    states = [rng.standard_normal((batch, 9, cfg.vision.hidden_size)).astype(np.float32) for _ in range(n_states)]
    ids = rng.integers(0, cfg.text.vocab_size, (batch, cfg.adapter.num_instruction_tokens)).astype(np.int32)
    mask = np.ones_like(ids, dtype=np.float32)
    mask[0, 5:] = 0  # padding in the first instruction
    return states, ids, mask


def _reference(adapter, cfg, states, ids, mask):
    p = {n: q.asnumpy() for n, q in adapter.parameters_and_names()}
    a = cfg.adapter
    batch = ids.shape[0]
    queries = np.broadcast_to(p["query_tokens"], (batch, a.num_query_tokens, a.hidden_size))
    if a.instruction_aware:
        ins = p["token_embedding.weight"][ids] + p["position_embedding.weight"][None, : ids.shape[1]]
        x = np.concatenate([queries, ins], 1)
        keep = np.concatenate([np.ones((batch, a.num_query_tokens), np.float32), mask], 1)
        attn_mask = ((1 - keep) * -1e9)[:, None, None, :]
    else:
        x, attn_mask = queries, None
    for k in range(a.num_hidden_layers):
        v = states[2 * (k + 1)] if a.multi_grained else states[-1]
        x = _layer_ref(p, k, x, v, a.num_attention_heads, attn_mask)
    x = x[:, : a.num_query_tokens]
    return _ln(x, p["final_layer_norm.weight"], p["final_layer_norm.bias"])


@pytest.mark.parametrize("overrides", [[], ["adapter.multi_grained=false"], ["adapter.instruction_aware=false"]])
def test_adapter_matches_numpy_eq2(overrides):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = load_config("configs/tiny_cpu.yaml", overrides + ["adapter.num_attention_heads=3"])
    adapter = QueryAdapter(cfg.adapter, cfg.text)
    states, ids, mask = _inputs(cfg)
    out = adapter(tuple(ms.Tensor(s) for s in states), ms.Tensor(ids), ms.Tensor(mask)).asnumpy()
    assert out.shape == (2, cfg.adapter.num_query_tokens, cfg.adapter.hidden_size)
    np.testing.assert_allclose(out, _reference(adapter, cfg, states, ids, mask), atol=1e-4, rtol=1e-4)


def test_layer_k_reads_vit_layer_2k():
    cfg = load_config("configs/tiny_cpu.yaml")
    adapter = QueryAdapter(cfg.adapter, cfg.text)
    n = cfg.vision.num_hidden_layers + 1
    assert [adapter.vision_index(k, n) for k in range(2)] == [2, 4]
    flat = QueryAdapter(load_config("configs/tiny_cpu.yaml", ["adapter.multi_grained=false"]).adapter, cfg.text)
    assert [flat.vision_index(k, n) for k in range(2)] == [4, 4]


def test_multi_grained_off_ignores_intermediate_layers():
    """Changing V_2 changes the output with multi_grained, and does nothing without it."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    for flag, changes in ((True, True), (False, False)):
        cfg = load_config("configs/tiny_cpu.yaml", [f"adapter.multi_grained={str(flag).lower()}"])
        adapter = QueryAdapter(cfg.adapter, cfg.text)
        states, ids, mask = _inputs(cfg)
        run = lambda s: adapter(tuple(ms.Tensor(t) for t in s), ms.Tensor(ids), ms.Tensor(mask)).asnumpy()
        base = run(states)
        states[2] = np.random.default_rng(5).standard_normal(states[2].shape).astype(np.float32)
        assert (np.abs(run(states) - base).max() > 1e-4) == changes


def test_instruction_aware_off_drops_instruction_tokens():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = load_config("configs/tiny_cpu.yaml", ["adapter.instruction_aware=false"])
    adapter = QueryAdapter(cfg.adapter, cfg.text)
    assert "token_embedding.weight" not in dict(adapter.parameters_and_names())
    states, ids, mask = _inputs(cfg)
    a = adapter(tuple(ms.Tensor(s) for s in states), ms.Tensor(ids), ms.Tensor(mask)).asnumpy()
    b = adapter(tuple(ms.Tensor(s) for s in states), ms.Tensor(ids[::-1].copy()), ms.Tensor(mask)).asnumpy()
    np.testing.assert_array_equal(a, b)


def test_padding_in_instruction_is_ignored():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = load_config("configs/tiny_cpu.yaml")
    adapter = QueryAdapter(cfg.adapter, cfg.text)
    states, ids, mask = _inputs(cfg)
    run = lambda i: adapter(tuple(ms.Tensor(s) for s in states), ms.Tensor(i), ms.Tensor(mask)).asnumpy()
    other = ids.copy()
    other[0, 5:] = 7  # only padded positions of row 0 change
    np.testing.assert_allclose(run(ids)[0], run(other)[0], atol=1e-6)


def test_graph_mode_equals_pynative():
    cfg = load_config("configs/tiny_cpu.yaml")
    states, ids, mask = _inputs(cfg)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    adapter = QueryAdapter(cfg.adapter, cfg.text)
    args = (tuple(ms.Tensor(s) for s in states), ms.Tensor(ids), ms.Tensor(mask))
    eager = adapter(*args).asnumpy()
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        graph = adapter(*args).asnumpy()
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_allclose(graph, eager, atol=1e-5)


def test_init_from_text_copies_sa_ffn_and_embeddings():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = load_config("configs/tiny_cpu.yaml")
    adapter = QueryAdapter(cfg.adapter, cfg.text)
    rng = np.random.default_rng(1)
    own = dict(adapter.parameters_and_names())
    text_state = {}
    for k in range(cfg.text.num_hidden_layers):
        for part in ("layer_norm1", "self_attn", "layer_norm2", "mlp"):
            for name, p in own.items():
                if name.startswith(f"layers.{k}.{part}."):
                    rest = name[len(f"layers.{k}.{part}."):]
                    text_state[f"text_model.encoder.layers.{k}.{part}.{rest}"] = rng.standard_normal(p.shape)
    d = cfg.text.hidden_size
    text_state["text_model.final_layer_norm.weight"] = rng.standard_normal(d)
    text_state["text_model.final_layer_norm.bias"] = rng.standard_normal(d)
    text_state["text_model.embeddings.token_embedding.weight"] = rng.standard_normal((cfg.text.vocab_size, d))
    text_state["text_model.embeddings.position_embedding.weight"] = rng.standard_normal(
        (cfg.text.max_position_embeddings, d))
    cross_before = own["layers.0.crossattention.q_proj.weight"].asnumpy().copy()
    done = adapter.init_from_text(text_state)
    assert "layers.1.self_attn.out_proj.bias" in done and "layers.0.crossattention.q_proj.weight" not in done
    np.testing.assert_allclose(own["layers.1.mlp.fc2.weight"].asnumpy(),
                               text_state["text_model.encoder.layers.1.mlp.fc2.weight"], rtol=1e-6)
    np.testing.assert_allclose(own["position_embedding.weight"].asnumpy(),
                               text_state["text_model.embeddings.position_embedding.weight"][:16], rtol=1e-6)
    np.testing.assert_array_equal(own["layers.0.crossattention.q_proj.weight"].asnumpy(), cross_before)
    del text_state["text_model.encoder.layers.1.mlp.fc2.weight"]
    with pytest.raises(KeyError, match="layers.1.mlp.fc2.weight"):
        adapter.init_from_text(text_state)


def test_from_scratch_init_knobs_scale_the_queries_and_the_cross_attention_qk():
    """query_init_std and cross_attention_init_gain change only the init they name (defaults: BLIP-2's)."""
    cfg = load_config("configs/tiny_cpu.yaml")
    ms.set_seed(3)
    base = QueryAdapter(cfg.adapter, cfg.text)
    tuned_cfg = load_config("configs/tiny_cpu.yaml", ["adapter.query_init_std=1.0",
                                                      "adapter.cross_attention_init_gain=3.0"])
    ms.set_seed(3)
    tuned = QueryAdapter(tuned_cfg.adapter, tuned_cfg.text)
    assert abs(float(base.query_tokens.asnumpy().std()) - cfg.adapter.initializer_range) < 0.01
    assert abs(float(tuned.query_tokens.asnumpy().std()) - 1.0) < 0.2
    b, t = dict(base.parameters_and_names()), dict(tuned.parameters_and_names())
    for name, p in b.items():
        if name == "query_tokens":
            continue
        gain = 3.0 if "crossattention" in name and name.split(".")[-2] in ("q_proj", "k_proj") \
            and name.endswith("weight") else 1.0
        np.testing.assert_allclose(t[name].asnumpy(), gain * p.asnumpy(), rtol=1e-6, atol=1e-7, err_msg=name)
