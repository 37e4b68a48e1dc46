"""In-place static key/value cache: the decode step writes one slot of per-layer ``Parameter`` buffers.

``DecodeCell`` (``kv_cache.py``) takes the caches as inputs and returns them rebuilt, which keeps it a pure
function (exportable to MindIR) but costs a pass over every cache slot and a copy of the whole cache per step.
Here the caches live on the device between steps as Parameters, flattened to (batch * kv_heads * max_len,
head_dim) so that ``ScatterUpdate`` (which indexes axis 0 and works in place) writes the new key and value rows of
every (sequence, head) without touching the other slots. Nothing of cache size crosses the cell boundary: the
decode step takes the new tokens and two integers and returns the logits.

* ``CacheBuffers``: the Parameters, for one batch size; shared by the two cells below.
* ``InplacePrefillCell``: the prompt pass of ``PrefillCell``; writes the prompt's keys and values into slots
  0..P-1 and returns the next-token logits.
* ``InplaceDecodeCell``: one new token per sequence, written into slot ``write_index`` (``FusedDecodeCell`` of
  ``fused_decode.py``: the same step on fused CPU kernels).

The attention mask is derived on the device from ``pad_count`` (each sequence's count of left-padding slots) and
``write_index``: slot j is visible when ``pad_count <= j <= write_index``. Slots past ``write_index`` may hold keys
of an earlier, longer generation; they are masked like padding, so the buffers are never cleared. Both cells run
the same mindformers sub-cells and operations as ``PrefillCell``/``DecodeCell`` (additive mask, softmax dtype,
rotary tables), so the logits agree with the recompute backend to float rounding.
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, ops

from lman_ms.infer.kv_cache import _CachedDecoderBase, merge_embeddings, prompt_mask
from lman_ms.models.llm import MASK_VALUE, VicunaDecoder


class CacheBuffers:
    """Per-layer key and value Parameters of shape (batch * kv_heads * max_cache_len, head_dim), zero-initialised."""

    def __init__(self, decoder: VicunaDecoder, batch_size: int, max_cache_len: int):
        cfg = decoder.config
        kv_heads = cfg.num_key_value_heads or cfg.num_attention_heads
        shape = (batch_size * kv_heads * max_cache_len, cfg.hidden_size // cfg.num_attention_heads)
        dtype = ms.dtype_to_nptype(decoder.compute_dtype)
        self.batch_size = batch_size

        def buffers(kind):  # one array each: a Tensor may share its numpy array's memory
            return ParameterTuple(Parameter(Tensor(np.zeros(shape, dtype)), name=f"kv_cache.b{batch_size}.{kind}.{i}",
                                            requires_grad=False) for i in range(cfg.num_hidden_layers))

        self.keys = buffers("key")
        self.values = buffers("value")


class _InplaceBase(_CachedDecoderBase):
    def __init__(self, decoder: VicunaDecoder, buffers: CacheBuffers, max_cache_len: int):
        super().__init__(decoder, max_cache_len)
        self.key_buffers = buffers.keys
        self.value_buffers = buffers.values
        self.batch_size = buffers.batch_size
        self.scatter = ops.ScatterUpdate()

    def _write(self, i, rows, key, value):
        """Write (batch, kv_heads, s, head_dim) key/value into the buffer rows ``rows`` (batch * kv_heads, s)."""
        shape = rows.shape + (self.head_dim,)
        keys = self.scatter(self.key_buffers[i], rows, key.reshape(shape))
        values = self.scatter(self.value_buffers[i], rows, value.reshape(shape))
        return keys, values

    def _first_rows(self):
        """Row of slot 0 of each (sequence, kv head), shape (batch * kv_heads, 1)."""
        return (ops.arange(self.batch_size * self.n_kv_head, dtype=ms.int32) * self.max_cache_len).reshape(-1, 1)


class InplacePrefillCell(_InplaceBase):
    """Prompt pass; inputs as ``PrefillCell`` (batch must be the buffers' batch size). Returns the next-token logits
    (batch, vocab) at position P-1; the prompt's keys and values are in the buffers' slots 0..P-1."""

    def construct(self, input_ids, input_embeds, embeds_mask, attention_mask, position_ids):
        seq = input_ids.shape[1]
        if seq > self.max_cache_len:
            raise ValueError("InplacePrefillCell: prompt longer than the KV cache")
        h = merge_embeddings(self.tok_embeddings, self.dtype, input_ids, input_embeds, embeds_mask)
        freqs = self._rotary(position_ids)
        mask = prompt_mask(attention_mask, self.dtype)
        rows = self._first_rows() + ops.arange(seq, dtype=ms.int32).reshape(1, seq)
        for i in range(self.num_layers):
            layer = self.layers[i]
            query, key, value = self._qkv(layer, layer.attention_norm(h), freqs)
            # the prompt attends to its own keys (as PrefillCell); the write only has to happen before decoding
            self._write(i, rows, key, value)
            h = self._finish_layer(layer, h, query, key, value, mask)
        return self._logits(h[:, seq - 1:seq])


class InplaceDecodeCell(_InplaceBase):
    """One incremental step. Inputs:

    * ``input_ids`` (batch, 1) int32: the last generated token of each sequence;
    * ``pad_count`` (batch, 1) int32: left-padding slots of each sequence (its first real slot);
    * ``write_index`` int32 scalar: the slot receiving this token's key and value (the same for every sequence).

    Returns the logits (batch, vocab).
    """

    def construct(self, input_ids, pad_count, write_index):
        bs = input_ids.shape[0]
        h = self.tok_embeddings(input_ids).astype(self.dtype)
        # a sequence's rotary position is its count of real tokens before this one, as in DecodeCell
        freqs = self._rotary(write_index - pad_count)
        slots = ops.arange(self.max_cache_len, dtype=ms.int32).reshape(1, -1)
        allowed = ops.logical_and(slots >= pad_count, slots <= write_index)
        mask = (1.0 - allowed.astype(self.dtype).reshape(bs, 1, 1, self.max_cache_len)) * MASK_VALUE
        rows = self._first_rows() + write_index
        shape = (bs, self.n_kv_head, self.max_cache_len, self.head_dim)
        for i in range(self.num_layers):
            layer = self.layers[i]
            query, key, value = self._qkv(layer, layer.attention_norm(h), freqs)
            keys, values = self._write(i, rows, key, value)
            h = self._finish_layer(layer, h, query, keys.reshape(shape), values.reshape(shape), mask)
        return self._logits(h)


__all__ = ["CacheBuffers", "InplaceDecodeCell", "InplacePrefillCell"]
