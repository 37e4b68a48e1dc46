"""Static key/value-cache cells for autoregressive decoding with ``VicunaDecoder`` on any backend (CPU included).

mindformers' own incremental path (``use_past=True``) relies on Ascend-only kernels (paged attention, fused rotary),
so these cells re-run the decoder layer by layer through the **same mindformers sub-cells and Parameter objects**
(``attention_norm``, ``wq/wk/wv/wo``, ``apply_rotary_emb``, ``_attn``, ``ffn_norm``, ``feed_forward``, ``norm_out``,
``lm_head``): no weights are copied, and each step performs the operations of the full forward (same rotary tables,
same additive mask value, same softmax dtype), so cached and recomputed logits agree to float rounding (max abs
difference <= 1e-5 on the tiny test model) and greedy tokens are identical.

Three cells, each compiled once per input shape in GRAPH_MODE:

* ``PrefillCell``: one pass over the left-padded prompt ``[prefix embeddings ; prompt tokens]`` (batch, P); returns
  the next-token logits at the last position and the caches, shape (layers, batch, kv_heads, max_len, head_dim),
  holding the prompt's rotated keys and values in slots 0..P-1 (zeros after).
* ``DecodeCell``: one new token per sequence; writes its key/value into slot ``write_index`` (the same for every
  sequence thanks to left padding) and attends over the slots the cache mask marks valid; returns logits and the
  updated caches (functional update: inputs are not modified, which also makes the cell exportable to MindIR).
* ``RecomputeCell``: the no-cache reference: the decoder's full forward over the whole (fixed-length) sequence at
  every step, for checking and benchmarking.

Rotary positions are per sequence (``position_ids``): a left-padded sequence starts at position 0 at its first real
token, as if it were alone in the batch.

``Generator`` runs these cells with ``inplace_cache=False``; by default it keeps the caches on the device instead
(``inplace_cache.py``), which spares the per-step rebuild and copy of the whole cache.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from lman_ms.models.llm import MASK_VALUE, VicunaDecoder


def merge_embeddings(tok_embeddings, dtype, input_ids, input_embeds, embeds_mask):
    """Token embeddings of ``input_ids``, replaced by ``input_embeds`` where ``embeds_mask`` is 1 (visual tokens)."""
    tokens = tok_embeddings(input_ids).astype(dtype)
    use = ops.broadcast_to(embeds_mask.astype(ms.bool_).expand_dims(-1), tokens.shape)
    return ops.select(use, input_embeds.astype(dtype), tokens)


def prompt_mask(attention_mask, dtype):
    """Additive causal + key-padding mask (batch, 1, P, P) of a left-padded prompt, ``attention_mask`` (batch, P)."""
    bs, seq = attention_mask.shape
    steps = ops.arange(seq, dtype=ms.int32)
    causal = steps.reshape(1, 1, seq, 1) >= steps.reshape(1, 1, 1, seq)
    real_key = attention_mask.reshape(bs, 1, 1, seq) != 0
    allowed = ops.logical_and(causal, real_key).astype(dtype)
    return (1.0 - allowed) * MASK_VALUE


def _check_decoder(decoder: VicunaDecoder) -> None:
    if decoder.use_past:
        raise ValueError("the static KV cache runs on the plain mindformers forward; build VicunaDecoder with "
                         "use_past=False (use_past=True is mindformers' own Ascend path: backend='mindformers')")


class _CachedDecoderBase(nn.Cell):
    """Shared pieces: handles on the decoder's sub-cells and the per-sequence rotary tables."""

    def __init__(self, decoder: VicunaDecoder, max_cache_len: int):
        # auto_prefix=False: holding the decoder must not rename its (shared) parameters.
        super().__init__(auto_prefix=False)
        _check_decoder(decoder)
        if not 0 < max_cache_len <= decoder.seq_length:
            raise ValueError(f"max_cache_len must be in 1..{decoder.seq_length} (llm.max_position_embeddings), "
                             f"got {max_cache_len}")
        model = decoder.llama.model
        cfg = decoder.config
        self.tok_embeddings = model.tok_embeddings
        self.layers = model.layers
        self.norm_out = model.norm_out
        self.lm_head = decoder.llama.lm_head
        self.num_layers = cfg.num_hidden_layers
        self.n_head = cfg.num_attention_heads
        self.n_kv_head = cfg.num_key_value_heads or cfg.num_attention_heads
        self.n_rep = self.n_head // self.n_kv_head
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.vocab_size = cfg.vocab_size
        self.max_cache_len = max_cache_len
        self.dtype = decoder.compute_dtype
        # The tables mindformers built for absolute positions 0..max_position_embeddings-1; gathering rows by
        # position id gives per-sequence positions with bit-identical values.
        self.freqs_cos = model.freqs_mgr.freqs_cos
        self.freqs_sin = model.freqs_mgr.freqs_sin
        self.swap_mask = model.freqs_mgr.swap_mask

    def _rotary(self, position_ids):
        """(cos, sin, swap_mask) for position_ids (batch, seq): cos/sin of shape (batch, 1, seq, head_dim)."""
        bs, seq = position_ids.shape
        flat = position_ids.reshape(-1)
        cos = ops.gather(self.freqs_cos, flat, 0).reshape(bs, 1, seq, self.head_dim)
        sin = ops.gather(self.freqs_sin, flat, 0).reshape(bs, 1, seq, self.head_dim)
        return cos, sin, self.swap_mask

    def _qkv(self, layer, x, freqs):
        """Normalised input -> rotated query (b, heads, s, d), rotated key and value (b, kv_heads, s, d)."""
        attn = layer.attention
        bs, seq, _ = x.shape
        query = attn.wq(x).astype(self.dtype).reshape(bs, seq, self.n_head, self.head_dim).transpose(0, 2, 1, 3)
        key = attn.wk(x).astype(self.dtype).reshape(bs, seq, self.n_kv_head, self.head_dim).transpose(0, 2, 1, 3)
        value = attn.wv(x).astype(self.dtype).reshape(bs, seq, self.n_kv_head, self.head_dim).transpose(0, 2, 1, 3)
        query, key = attn.apply_rotary_emb(query, key, freqs)
        return query, key, value

    def _finish_layer(self, layer, h, query, key, value, mask):
        """Attention over (key, value) with the additive mask, output projection, residuals and the FFN."""
        attn = layer.attention
        context = attn._attn(query, attn._repeat_kv(key, self.n_rep), attn._repeat_kv(value, self.n_rep), mask)
        h = h + attn.wo(context).astype(h.dtype)
        return h + layer.feed_forward(layer.ffn_norm(h))

    def _logits(self, h_last):
        """Final norm and LM head for (batch, 1, hidden) -> float32 logits (batch, vocab)."""
        logits = self.lm_head(self.norm_out(h_last)).astype(ms.float32)
        return logits.reshape(-1, self.vocab_size)


class PrefillCell(_CachedDecoderBase):
    """Prompt pass. Inputs, all (batch, P):

    * ``input_ids`` int32: prompt tokens (any id where ``embeds_mask`` is 1 or the position is padding);
    * ``input_embeds`` (batch, P, hidden): used where ``embeds_mask`` is 1 (e.g. projected visual tokens);
    * ``embeds_mask`` int32, ``attention_mask`` int32 (1 real / 0 left padding), ``position_ids`` int32.

    Returns (next-token logits (batch, vocab) at position P-1, key cache, value cache), caches of shape
    (layers, batch, kv_heads, max_cache_len, head_dim).
    """

    def construct(self, input_ids, input_embeds, embeds_mask, attention_mask, position_ids):
        bs, seq = input_ids.shape
        if seq > self.max_cache_len:
            raise ValueError("PrefillCell: prompt longer than the KV cache")
        h = merge_embeddings(self.tok_embeddings, self.dtype, input_ids, input_embeds, embeds_mask)
        freqs = self._rotary(position_ids)
        mask = prompt_mask(attention_mask, self.dtype)
        keys = []
        values = []
        for i in range(self.num_layers):
            layer = self.layers[i]
            query, key, value = self._qkv(layer, layer.attention_norm(h), freqs)
            keys.append(key)
            values.append(value)
            h = self._finish_layer(layer, h, query, key, value, mask)
        logits = self._logits(h[:, seq - 1:seq])
        key_cache = ops.stack(keys)
        value_cache = ops.stack(values)
        if seq < self.max_cache_len:
            pad = ops.zeros((self.num_layers, bs, self.n_kv_head, self.max_cache_len - seq, self.head_dim),
                            self.dtype)
            key_cache = ops.concat((key_cache, pad), 3)
            value_cache = ops.concat((value_cache, pad), 3)
        return logits, key_cache, value_cache


class DecodeCell(_CachedDecoderBase):
    """One incremental step. Inputs:

    * ``input_ids`` (batch, 1) int32: the last generated token of each sequence;
    * ``position_ids`` (batch, 1) int32: its rotary position (the sequence's count of real tokens so far);
    * ``key_cache``, ``value_cache`` (layers, batch, kv_heads, max_cache_len, head_dim);
    * ``cache_mask`` (batch, max_cache_len) int32: 1 for the slots this token may attend to, its own slot included;
    * ``write_index`` int32 scalar: the slot receiving this token's key and value.

    Returns (logits (batch, vocab), new key cache, new value cache).
    """

    def construct(self, input_ids, position_ids, key_cache, value_cache, cache_mask, write_index):
        bs = input_ids.shape[0]
        h = self.tok_embeddings(input_ids).astype(self.dtype)
        freqs = self._rotary(position_ids)
        # One-hot over the cache slots: the blend old*(1-slot) + new*slot is exact (multiplying by 1 or 0).
        slot = (ops.arange(self.max_cache_len, dtype=ms.int32) == write_index).astype(self.dtype)
        slot = slot.reshape(1, 1, self.max_cache_len, 1)
        keep = 1.0 - slot
        allowed = (cache_mask != 0).astype(self.dtype).reshape(bs, 1, 1, self.max_cache_len)
        mask = (1.0 - allowed) * MASK_VALUE
        # One unstack per cache: indexing key_cache[i] per layer lowers to StridedSlice, ~10x slower on CPU.
        past_keys = ops.unstack(key_cache, 0)
        past_values = ops.unstack(value_cache, 0)
        keys = []
        values = []
        for i in range(self.num_layers):
            layer = self.layers[i]
            query, key, value = self._qkv(layer, layer.attention_norm(h), freqs)
            key_all = past_keys[i] * keep + key * slot
            value_all = past_values[i] * keep + value * slot
            keys.append(key_all)
            values.append(value_all)
            h = self._finish_layer(layer, h, query, key_all, value_all, mask)
        return self._logits(h), ops.stack(keys), ops.stack(values)


class RecomputeCell(nn.Cell):
    """No-cache step: the decoder's own full forward over the whole sequence, logits at ``index``.

    Inputs as ``PrefillCell`` (without position ids: the decoder uses absolute positions, which give the same
    attention scores for a left-padded sequence because rotary attention depends only on the distance q - k) plus
    ``index`` (1,) int32: the position whose next-token logits are returned, shape (batch, vocab).
    """

    def __init__(self, decoder: VicunaDecoder):
        super().__init__(auto_prefix=False)
        _check_decoder(decoder)
        self.decoder = decoder
        self.tok_embeddings = decoder.llama.model.tok_embeddings
        self.dtype = decoder.compute_dtype
        self.vocab_size = decoder.config.vocab_size

    def construct(self, input_ids, input_embeds, embeds_mask, attention_mask, index):
        embeds = merge_embeddings(self.tok_embeddings, self.dtype, input_ids, input_embeds, embeds_mask)
        logits = self.decoder(None, embeds, attention_mask)
        return ops.gather(logits, index, 1).reshape(-1, self.vocab_size)


def cache_shape(decoder: VicunaDecoder, batch_size: int, max_cache_len: int) -> tuple:
    """(layers, batch, kv_heads, max_len, head_dim) of one of the two caches."""
    cfg = decoder.config
    return (cfg.num_hidden_layers, batch_size, cfg.num_key_value_heads or cfg.num_attention_heads, max_cache_len,
            cfg.hidden_size // cfg.num_attention_heads)


__all__ = ["PrefillCell", "DecodeCell", "RecomputeCell", "cache_shape"]
