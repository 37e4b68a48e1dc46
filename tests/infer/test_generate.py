"""KV-cache generation (GRAPH_MODE, CPU) against recomputing the full sequence and Hugging Face ``generate``."""
import numpy as np
import mindspore as ms
import pytest
import torch

from lman_ms.convert.llama import llama_config_from_hf, load_llama_state
from lman_ms.infer.generate import (GenerationConfig, Generator, apply_repetition_penalty, select_tokens,
                                    top_k_filter, top_p_filter)
from lman_ms.infer.kv_cache import DecodeCell, PrefillCell, RecomputeCell, cache_shape
from lman_ms.models.llm import VicunaDecoder
from tests.convert.hf_fixtures import LLAMA, tiny_llama_model

VOCAB, HIDDEN = LLAMA["vocab_size"], LLAMA["hidden_size"]
PROMPTS = [[5, 9, 11, 3, 7, 40, 8], [20, 21, 33]]   # different lengths: the second is left-padded
MAX_NEW = 10


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny GQA model (6 heads, 3 key/value heads), its decoder in GRAPH_MODE and one Generator (compiled cells
    are reused by every test: batch 2, prompt bucket 16, cache 32)."""
    folder, model = tiny_llama_model(tmp_path_factory.mktemp("gen"), num_attention_heads=6, num_key_value_heads=3,
                                     max_position_embeddings=32)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    decoder = VicunaDecoder(llama_config_from_hf(folder))
    decoder.set_train(False)
    decoder.load_state(load_llama_state(folder), source=folder)
    return model, decoder, Generator(decoder, max_cache_len=32, prefill_bucket=16)


@pytest.fixture(scope="module")
def greedy(setup):
    """Greedy reference tokens by recomputing the full sequence each step (no cache), with their logits."""
    _, _, gen = setup
    return gen.generate(PROMPTS, max_new_tokens=MAX_NEW, backend="recompute", output_scores=True)


def _hf_greedy(model, embeds=None, ids=None, steps=MAX_NEW):
    kwargs = dict(max_new_tokens=steps, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        if embeds is not None:
            return model.generate(inputs_embeds=torch.tensor(embeds)[None], **kwargs)[0].tolist()
        return model.generate(torch.tensor([ids]), **kwargs)[0, len(ids):].tolist()


def test_cells_share_the_decoder_parameters(setup):
    _, decoder, _ = setup
    own = {id(p) for p in decoder.get_parameters()}
    for cell in (PrefillCell(decoder, 32), DecodeCell(decoder, 32), RecomputeCell(decoder)):
        params = list(cell.get_parameters())
        assert params and {id(p) for p in params} == own
    # holding the decoder did not rename its parameters
    assert "model.layers.0.attention.wq.weight" in {p.name for p in decoder.get_parameters()}
    assert cache_shape(decoder, 2, 32) == (2, 2, 3, 32, 4)


def test_greedy_cache_equals_recompute_batch_left_padding(setup, greedy):
    model, _, gen = setup
    cached = gen.generate(PROMPTS, max_new_tokens=MAX_NEW, output_scores=True)
    assert cached.sequences == greedy.sequences
    assert all(len(s) == MAX_NEW for s in cached.sequences) and cached.finished == [False, False]
    # Same logits at every step (the cache reuses the exact operations of the full forward).
    assert len(cached.scores) == MAX_NEW
    assert max(np.abs(a - b).max() for a, b in zip(cached.scores, greedy.scores)) <= 1e-5
    # And the same tokens as Hugging Face, prompt by prompt without padding.
    for prompt, seq in zip(PROMPTS, cached.sequences):
        assert seq == _hf_greedy(model, ids=prompt)


def test_cache_filled_to_the_last_slot(setup, greedy):
    _, _, gen = setup
    # prompt bucket 16 + 17 new tokens: the 16 fed-back tokens occupy slots 16..31 of the 32-slot cache
    cached = gen.generate(PROMPTS, max_new_tokens=17, output_scores=True)
    recomputed = gen.generate(PROMPTS, max_new_tokens=17, backend="recompute", output_scores=True)
    assert cached.sequences == recomputed.sequences
    assert [s[:MAX_NEW] for s in cached.sequences] == greedy.sequences
    assert np.abs(cached.scores[-1] - recomputed.scores[-1]).max() <= 1e-5


def test_greedy_with_embeddings_prefix(setup):
    model, decoder, gen = setup
    prefix = np.random.default_rng(0).standard_normal((2, 4, HIDDEN)).astype(np.float32) * 0.5
    cached = gen.generate(PROMPTS, prefix_embeds=prefix, max_new_tokens=6)
    recomputed = gen.generate(PROMPTS, prefix_embeds=prefix, max_new_tokens=6, backend="recompute")
    assert cached.sequences == recomputed.sequences
    # Same sequences handed over already assembled ([prefix ; token embeddings]) give the same tokens ...
    table = decoder.llama.model.tok_embeddings.embedding_weight.asnumpy()
    assembled = [np.concatenate([prefix[b], table[PROMPTS[b]]]) for b in range(2)]
    assert gen.generate(inputs_embeds=assembled, max_new_tokens=6).sequences == cached.sequences
    # ... and Hugging Face generate(inputs_embeds=...) agrees.
    for b in range(2):
        assert cached.sequences[b] == _hf_greedy(model, embeds=assembled[b], steps=6)


def test_eos_stops_each_sequence(setup, greedy):
    _, _, gen = setup
    eos = greedy.sequences[0][3]
    out = gen.generate(PROMPTS, max_new_tokens=MAX_NEW, eos_token_id=eos)
    for free, stopped, done in zip(greedy.sequences, out.sequences, out.finished):
        expected = free[:free.index(eos) + 1] if eos in free else free
        assert stopped == expected and done == (eos in free)
    assert out.sequences[0][-1] == eos and len(out.sequences[0]) == 4
    # Both sequences stopping ends the loop early.
    both = gen.generate(PROMPTS, max_new_tokens=MAX_NEW, eos_token_id=[greedy.sequences[0][0],
                                                                      greedy.sequences[1][1]])
    assert both.sequences == [greedy.sequences[0][:1], greedy.sequences[1][:2]] and both.finished == [True, True]


def test_sampling_seeded_reproducible_and_top_k_1_is_greedy(setup, greedy):
    _, _, gen = setup
    kwargs = dict(max_new_tokens=MAX_NEW, do_sample=True, temperature=1.5, top_k=20, top_p=0.9)
    first = gen.generate(PROMPTS, seed=7, **kwargs).sequences
    assert first == gen.generate(PROMPTS, seed=7, **kwargs).sequences
    assert all(0 <= t < VOCAB for seq in first for t in seq)
    assert gen.generate(PROMPTS, do_sample=True, top_k=1, seed=3, max_new_tokens=MAX_NEW).sequences \
        == greedy.sequences


def test_repetition_penalty_cache_equals_recompute(setup, greedy):
    _, _, gen = setup
    cfg = GenerationConfig(max_new_tokens=MAX_NEW, repetition_penalty=1.8)
    cached = gen.generate(PROMPTS, generation_config=cfg).sequences
    assert cached == gen.generate(PROMPTS, generation_config=cfg, backend="recompute").sequences


def test_pynative_cache_equals_recompute(setup, greedy):
    _, decoder, _ = setup
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        gen = Generator(decoder, max_cache_len=32, prefill_bucket=4)
        cached = gen.generate(PROMPTS, max_new_tokens=4)
        assert cached.sequences == gen.generate(PROMPTS, max_new_tokens=4, backend="recompute").sequences
        assert cached.sequences == [s[:4] for s in greedy.sequences]
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def test_bad_requests_are_rejected(setup):
    _, _, gen = setup
    with pytest.raises(ValueError, match="exceeds the cache length 32"):
        gen.generate(PROMPTS, max_new_tokens=18)  # 16 (bucketed prompt) + 18 - 1 > 32
    # room(): exactly the bound generate() enforces
    assert gen.room(max(len(p) for p in PROMPTS)) == 17 and gen.room(17) == 1 and gen.room(33) < 1
    with pytest.raises(ValueError, match="exceeds the cache length 32"):
        gen.generate(PROMPTS, max_new_tokens=gen.room(max(len(p) for p in PROMPTS)) + 1)
    with pytest.raises(ValueError, match="max_cache_len must be in 1..32"):
        Generator(gen.decoder, max_cache_len=33)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        gen.generate([[3, 4], []], max_new_tokens=2)
    with pytest.raises(ValueError, match="top_p"):
        gen.generate(PROMPTS, do_sample=True, top_p=0.0)
    with pytest.raises(ValueError, match="backend"):
        gen.generate(PROMPTS, backend="beam")
    with pytest.raises(ValueError, match="use_past=True"):
        gen.generate(PROMPTS, backend="mindformers")
    with pytest.raises(ValueError, match=r"inputs_embeds\[0\] must have shape \(length, 24\)"):
        gen.generate(inputs_embeds=[np.zeros((3, 5), np.float32)])


# ---- host-side token selection, hand-computed ------------------------------------------------------------------------
def test_repetition_penalty_by_hand():
    logits = np.array([[2.0, -1.0, 0.5, 3.0]])
    seen = np.array([[True, True, False, False]])
    np.testing.assert_allclose(apply_repetition_penalty(logits, seen, 2.0), [[1.0, -2.0, 0.5, 3.0]])


def test_top_k_and_top_p_by_hand():
    logits = np.log(np.array([[0.1, 0.4, 0.2, 0.3]]))
    assert np.isneginf(top_k_filter(logits, 2)).tolist() == [[True, False, True, False]]
    # sorted probabilities 0.4, 0.3, 0.2, 0.1: mass before each = 0, 0.4, 0.7, 0.9
    assert np.isneginf(top_p_filter(logits, 0.65)).tolist() == [[True, False, True, False]]  # keeps 0.4 + 0.3
    assert np.isneginf(top_p_filter(logits, 0.35)).tolist() == [[True, False, True, True]]   # 0.4 alone reaches p
    assert np.isneginf(top_p_filter(logits, 0.95)).tolist() == [[False, False, False, False]]


class _FixedDraws:
    """Stands in for numpy's Generator: returns the given uniforms, to check the inverse-CDF mapping by hand."""

    def __init__(self, values):
        self.values = np.asarray(values, float).reshape(-1, 1)

    def random(self, shape):
        assert shape == self.values.shape
        return self.values


def test_sampling_is_inverse_cdf_by_hand():
    logits = np.log(np.array([[0.2, 0.5, 0.3]] * 4))
    seen = np.zeros_like(logits, bool)
    cfg = GenerationConfig(do_sample=True)
    # CDF 0.2, 0.7, 1.0
    assert select_tokens(logits, seen, cfg, _FixedDraws([0.1, 0.25, 0.69, 0.95])).tolist() == [0, 1, 1, 2]
    # temperature 0.5 squares the probabilities: 0.04, 0.25, 0.09 -> CDF 0.1053, 0.7632, 1.0
    cfg = GenerationConfig(do_sample=True, temperature=0.5)
    assert select_tokens(logits, seen, cfg, _FixedDraws([0.1, 0.11, 0.76, 0.77])).tolist() == [0, 1, 1, 2]
