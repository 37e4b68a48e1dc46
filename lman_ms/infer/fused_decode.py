"""The decode step of ``InplaceDecodeCell`` on the fused CPU kernels of ``decode_kernels.cc`` (see
``decode_kernels.py`` for why and how they are built)."""
from __future__ import annotations

import mindspore as ms
from mindspore import Tensor

from lman_ms.infer.decode_kernels import DecodeKernels
from lman_ms.infer.inplace_cache import CacheBuffers, InplaceDecodeCell
from lman_ms.models.llm import VicunaDecoder


class FusedDecodeCell(InplaceDecodeCell):
    """``InplaceDecodeCell`` on the kernels of ``decode_kernels.cc``, same inputs, Parameters and buffers. Per layer:
    RMSNorm + q/k/v projections + rotary embedding in one kernel, the two buffer writes, attention over the visible
    slots, the output projection, RMSNorm + the gated FFN input, the FFN output projection: ~10 ops instead of ~50.
    The operations of mindformers' cells in float32, summed in another order. ``supports(decoder)`` tells whether it
    applies (float32 LLaMA: no biases, SiLU-gated FFN, rotate-half rotary embedding, one RMSNorm epsilon)."""

    def __init__(self, decoder: VicunaDecoder, buffers: CacheBuffers, max_cache_len: int, kernels: DecodeKernels):
        super().__init__(decoder, buffers, max_cache_len)
        if not self.supports(decoder):
            raise ValueError("FusedDecodeCell needs a float32 LLaMA decoder: no biases, SiLU-gated FFN, rotate-half "
                             "rotary embedding, one RMSNorm epsilon")
        # separate attributes: graph mode does not read fields of a NamedTuple
        self.gemv, self.norm_gemv = kernels.gemv, kernels.norm_gemv
        self.norm_gated_gemv, self.norm_qkv_rope = kernels.norm_gated_gemv, kernels.norm_qkv_rope
        self.attention = kernels.attention
        self.eps = Tensor([self.norm_out.eps], ms.float32)
        self.layout = Tensor([self.n_kv_head, max_cache_len], ms.int32)

    @staticmethod
    def supports(decoder: VicunaDecoder) -> bool:
        from mindformers.models.llama.llama_layer import LlamaSiLU
        model = decoder.llama.model
        if decoder.compute_dtype != ms.float32:
            return False
        plain = [decoder.llama.lm_head]  # linears without bias or activation
        gates = []
        norms = [model.norm_out]
        for layer in model.layers:
            attn, ffn = layer.attention, layer.feed_forward
            if not (all(hasattr(ffn, name) for name in ("w1", "w2", "w3"))  # not the concatenated gate/up variant
                    and getattr(attn.apply_rotary_emb, "use_rope_slice", False)):
                return False
            plain += [attn.wq, attn.wk, attn.wv, attn.wo, ffn.w2, ffn.w3]
            gates.append(ffn.w1)
            norms += [layer.attention_norm, layer.ffn_norm]
        return (all(not lin.has_bias and not lin.activation_flag for lin in plain)
                and all(not lin.has_bias and isinstance(lin.activation, LlamaSiLU) for lin in gates)
                and all(lin.weight.dtype == ms.float32 for lin in plain + gates)
                and all(getattr(norm, "self_define", False) and norm.weight.dtype == ms.float32 for norm in norms)
                and len({norm.eps for norm in norms}) == 1)

    def construct(self, input_ids, pad_count, write_index):
        bs = input_ids.shape[0]
        h = self.tok_embeddings(input_ids).astype(self.dtype)
        cos, sin, _ = self._rotary(write_index - pad_count)
        cos = cos.reshape(bs, self.head_dim)
        sin = sin.reshape(bs, self.head_dim)
        rows = self._first_rows() + write_index
        for i in range(self.num_layers):
            layer = self.layers[i]
            attn, ffn = layer.attention, layer.feed_forward  # mindformers' LlamaFeedForward: w2(w3(x) * silu(w1(x)))
            query, key, value = self.norm_qkv_rope(h, layer.attention_norm.weight, self.eps, attn.wq.weight,
                                                   attn.wk.weight, attn.wv.weight, cos, sin)
            keys, values = self._write(i, rows, key, value)
            context = self.attention(query, keys, values, pad_count, write_index, self.layout)
            h = h + self.gemv(context, attn.wo.weight)
            gated = self.norm_gated_gemv(h, layer.ffn_norm.weight, self.eps, ffn.w1.weight, ffn.w3.weight)
            h = h + self.gemv(gated, ffn.w2.weight)
        logits = self.norm_gemv(h, self.norm_out.weight, self.eps, self.lm_head.weight)
        return logits.reshape(-1, self.vocab_size)


__all__ = ["FusedDecodeCell"]
