"""VicunaDecoder against Hugging Face ``LlamaForCausalLM`` (tiny random model saved as safetensors, fp32, CPU)."""
import numpy as np
import mindspore as ms
import pytest
import torch

from lman_ms.convert.llama import llama_config_from_hf, load_llama_state
from lman_ms.models.llm import VicunaDecoder
from tests.convert.hf_fixtures import LLAMA, tiny_llama_model

# Head counts that are not powers of two, grouped-query attention (6 query heads share 3 key/value heads).
TINY = dict(num_attention_heads=6, num_key_value_heads=3, max_position_embeddings=32)
VOCAB, HIDDEN = LLAMA["vocab_size"], LLAMA["hidden_size"]


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory):
    """(folder, torch model) of a tiny random HF LlamaForCausalLM."""
    return tiny_llama_model(tmp_path_factory.mktemp("llm"), **TINY)


def _decoder(hf_llama, mode):
    folder, _ = hf_llama
    ms.set_context(mode=mode, device_target="CPU")
    decoder = VicunaDecoder(llama_config_from_hf(folder))
    decoder.set_train(False)
    decoder.load_state(load_llama_state(folder), source=folder)
    return decoder


def _hf_logits(model, ids, mask=None):
    with torch.no_grad():
        kwargs = {} if mask is None else {"attention_mask": torch.tensor(mask)}
        return model(torch.tensor(ids, dtype=torch.long), **kwargs).logits.numpy()


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
def test_logits_match_hf(hf_llama, mode):
    decoder = _decoder(hf_llama, mode)
    assert decoder.config.num_key_value_heads == 3 and decoder.seq_length == 32
    rng = np.random.default_rng(1)
    # Shorter than seq_length, with left padding on the second row: only real positions are compared.
    ids = rng.integers(3, VOCAB, (2, 11)).astype(np.int32)
    mask = np.ones((2, 11), np.int32)
    mask[1, :4] = 0
    ids[1, :4] = 0
    ours = decoder(ms.Tensor(ids), attention_mask=ms.Tensor(mask)).asnumpy()
    ref = _hf_logits(hf_llama[1], ids, mask)
    assert ours.shape == (2, 11, VOCAB) and ours.dtype == np.float32
    assert np.abs(ours[mask == 1] - ref[mask == 1]).max() <= 1e-4
    # Exactly seq_length tokens, default mask (all ones): no internal padding.
    full = rng.integers(0, VOCAB, (1, 32)).astype(np.int32)
    assert np.abs(decoder(ms.Tensor(full)).asnumpy() - _hf_logits(hf_llama[1], full)).max() <= 1e-4


def test_input_embeds_path_equals_input_ids_path(hf_llama):
    decoder = _decoder(hf_llama, ms.GRAPH_MODE)
    ids = ms.Tensor(np.random.default_rng(2).integers(0, VOCAB, (2, 7)).astype(np.int32))
    embeds = decoder.embed_tokens(ids)
    assert embeds.shape == (2, 7, HIDDEN)
    table = hf_llama[1].model.embed_tokens.weight.detach().numpy()
    np.testing.assert_array_equal(embeds.asnumpy()[1, 3], table[int(ids.asnumpy()[1, 3])])
    by_ids = decoder(ids).asnumpy()
    by_embeds = decoder(None, embeds).asnumpy()
    assert np.abs(by_ids - by_embeds).max() <= 1e-6


def test_loss_ignores_minus_100_by_hand():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    # logits (1, 4, 3); position t predicts label t+1. Only labels[1] = 2 and labels[3] = 0 count.
    logits = np.array([[[0.0, 0.0, np.log(3.0)],        # predicts label[1] = 2: p = 3/5
                        [5.0, -1.0, 2.0],               # predicts label[2] = -100: ignored
                        [np.log(4.0), 0.0, 0.0],        # predicts label[3] = 0: p = 4/6
                        [9.0, 9.0, 9.0]]], np.float32)  # last position: nothing to predict
    labels = np.array([[7, 2, -100, 0]], np.int32)
    expected = -(np.log(3 / 5) + np.log(4 / 6)) / 2
    loss = float(VicunaDecoder.loss(ms.Tensor(logits), ms.Tensor(labels)).asnumpy())
    assert abs(loss - expected) < 1e-5 * expected


def test_loss_equals_hf_loss(hf_llama):
    decoder = _decoder(hf_llama, ms.PYNATIVE_MODE)
    rng = np.random.default_rng(3)
    ids = rng.integers(3, VOCAB, (2, 9)).astype(np.int32)
    labels = ids.astype(np.int64).copy()
    labels[:, :5] = -100          # instruction and visual positions carry no loss (eq. 8)
    labels[1, 7] = -100
    ours = float(decoder.loss(decoder(ms.Tensor(ids)), ms.Tensor(labels.astype(np.int32))).asnumpy())
    with torch.no_grad():
        ref = float(hf_llama[1](torch.tensor(ids, dtype=torch.long), labels=torch.tensor(labels)).loss)
    assert abs(ours - ref) < 1e-5


def test_load_state_errors_name_the_key(hf_llama):
    folder, _ = hf_llama
    ms.set_context(mode=ms.PYNATIVE_MODE)
    decoder = VicunaDecoder(llama_config_from_hf(folder))
    state = load_llama_state(folder)
    before = decoder.native_parameters()["model.norm_out.weight"].asnumpy().copy()
    broken = dict(state)
    del broken["model.layers.1.attention.wk.weight"]
    with pytest.raises(KeyError, match=r"ckpt_x.*model\.layers\.1\.attention\.wk\.weight"):
        decoder.load_state(broken, source="ckpt_x")
    wrong = dict(state)
    wrong["model.layers.0.feed_forward.w2.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.feed_forward\.w2\.weight: shape \(3, 3\)"):
        decoder.load_state(wrong)
    # Nothing was written by the failed loads.
    np.testing.assert_array_equal(decoder.native_parameters()["model.norm_out.weight"].asnumpy(), before)


def test_too_long_input_is_rejected(hf_llama):
    decoder = _decoder(hf_llama, ms.PYNATIVE_MODE)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        decoder(ms.Tensor(np.zeros((1, 33), np.int32)))
    with pytest.raises(ValueError, match="input_ids or input_embeds"):
        decoder()


def test_parameter_names_are_mindformers_native(hf_llama):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    decoder = VicunaDecoder(llama_config_from_hf(hf_llama[0]))
    names = {p.name for p in decoder.get_parameters()}
    assert names == set(load_llama_state(hf_llama[0]))
    assert {"model.tok_embeddings.embedding_weight", "model.layers.1.attention.wk.weight", "lm_head.weight",
            "model.norm_out.weight"} <= names


def test_from_hf_folder_tied_embeddings(tmp_path):
    folder, model = tiny_llama_model(tmp_path, seed=5, tie_word_embeddings=True, **TINY)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    decoder = VicunaDecoder.from_hf(folder)
    params = decoder.native_parameters()
    assert decoder.config.tie_word_embeddings and "lm_head.weight" not in params
    assert decoder.llama.lm_head.weight is params["model.tok_embeddings.embedding_weight"]
    ids = np.random.default_rng(4).integers(0, VOCAB, (1, 6)).astype(np.int32)
    assert np.abs(decoder(ms.Tensor(ids)).asnumpy() - _hf_logits(model, ids)).max() <= 1e-4
