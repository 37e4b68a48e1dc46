"""The query adapter of L-Man, eq. (2):

    X_k = FFN_k(CA_k(SA_k(X_{k-1}), V_2k, V_2k)),   k = 1..m,

over X_0 = [128 learnable query tokens ; fixed-length instruction tokens] (instruction-aware adaptation), where
V_2k is the output of ViT layer 2k (multi-grained visual features, eq. 1). The output is the query positions of
X_m: the visual tokens handed to the LLM (after a linear projection) and pooled into V_g in stage 1.

Where the paper is silent (docs/decisions.md):
* each sub-layer is pre-LN with a residual, like the CLIP text layers that initialise SA_k and FFN_k
  (``layer_norm1``/``self_attn``, ``layer_norm2``/``mlp`` keep the CLIP names so they copy by name);
  CA_k is new: ``layer_norm_cross`` on the queries, ``layer_norm_kv`` on V_2k (raw ViT hidden states are
  un-normalised), keys/values projected from the ViT width;
* self-attention is bidirectional over queries and instruction tokens with a padding mask; cross-attention is
  applied to every position, as eq. (2) says;
* instruction tokens are CLIP-tokenised and embedded with the CLIP token + position embeddings; queries carry no
  position embedding; a final layer norm (from CLIP's ``final_layer_norm``) closes the stack.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from lman_ms.config import AdapterConfig, TextConfig

from .layers import CLIPAttention, CLIPMLP, Embedding, LayerNorm, padding_mask


class QueryAdapterLayer(nn.Cell):
    """One layer l_q^k: SA_k -> CA_k(., V_2k, V_2k) -> FFN_k, each pre-LN with a residual."""

    def __init__(self, cfg: AdapterConfig):
        super().__init__()
        d, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.layer_norm1 = LayerNorm(d, eps)
        self.self_attn = CLIPAttention(d, cfg.num_attention_heads)
        self.layer_norm_cross = LayerNorm(d, eps)
        self.layer_norm_kv = LayerNorm(cfg.encoder_hidden_size, eps)
        self.crossattention = CLIPAttention(d, cfg.num_attention_heads, kv_dim=cfg.encoder_hidden_size)
        self.layer_norm2 = LayerNorm(d, eps)
        self.mlp = CLIPMLP(d, cfg.intermediate_size, cfg.hidden_act)

    def construct(self, x, vision_state, self_mask=None):
        x = x + self.self_attn(self.layer_norm1(x), None, self_mask)                              # SA_k
        x = x + self.crossattention(self.layer_norm_cross(x), self.layer_norm_kv(vision_state))   # CA_k
        return x + self.mlp(self.layer_norm2(x))                                                  # FFN_k


class QueryAdapter(nn.Cell):
    """Query adapter with ``multi_grained`` (layer k reads V_2k; off: every layer reads the last ViT layer) and
    ``instruction_aware`` (off: X_0 holds the query tokens only) as in the paper's ablations (Table 6)."""

    def __init__(self, cfg: AdapterConfig, text_cfg: TextConfig):
        super().__init__()
        if cfg.encoder_hidden_size is None:
            raise ValueError("AdapterConfig.encoder_hidden_size is unset: build configs through LManConfig")
        self.cfg = cfg
        self.num_query_tokens = cfg.num_query_tokens
        self.multi_grained = cfg.multi_grained
        self.instruction_aware = cfg.instruction_aware
        # A from-scratch adapter (the tiny demo) learns far faster with distinct queries (std ~1, not 0.02: beside
        # the attention outputs in the residual stream, 0.02-queries are near-identical) and a sharper first
        # cross-attention (larger q/k init: at the default, every query reads about the mean of the image, so
        # the visual tokens start as copies of one pooled vector and lose where things are). docs/decisions.md.
        query_std = cfg.initializer_range if cfg.query_init_std is None else cfg.query_init_std
        self.query_tokens = Parameter(
            initializer(Normal(query_std), (1, cfg.num_query_tokens, cfg.hidden_size), ms.float32),
            name="query_tokens")
        if cfg.instruction_aware:
            if cfg.num_instruction_tokens > text_cfg.max_position_embeddings:
                raise ValueError(f"adapter.num_instruction_tokens ({cfg.num_instruction_tokens}) exceeds "
                                 f"text.max_position_embeddings ({text_cfg.max_position_embeddings})")
            self.token_embedding = Embedding(text_cfg.vocab_size, cfg.hidden_size)
            self.position_embedding = Embedding(cfg.num_instruction_tokens, cfg.hidden_size, init_std=0.01)
            self.position_ids = Tensor(np.arange(cfg.num_instruction_tokens, dtype=np.int32)[None])
        self.layers = nn.CellList([QueryAdapterLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        if cfg.cross_attention_init_gain != 1.0:
            for layer in self.layers:
                for proj in (layer.crossattention.q_proj, layer.crossattention.k_proj):
                    proj.weight.set_data(proj.weight * cfg.cross_attention_init_gain)
        self.final_layer_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.query_keep = Tensor(np.ones((1, cfg.num_query_tokens), np.float32))

    def vision_index(self, k: int, num_vision_states: int) -> int:
        """Index into (V_0, ..., V_2m) read by adapter layer k (0-based): V_2(k+1), or V_2m without multi_grained."""
        return 2 * (k + 1) if self.multi_grained else num_vision_states - 1

    def construct(self, vision_hidden_states: Sequence[Tensor], instruction_ids: Optional[Tensor] = None,
                  instruction_mask: Optional[Tensor] = None) -> Tensor:
        """vision_hidden_states: (V_0..V_2m), each (B, N, Dv); instruction_ids/mask: (B, T) CLIP ids and 1/0.
        Returns the visual tokens (B, num_query_tokens, D)."""
        batch = vision_hidden_states[0].shape[0]
        queries = ops.broadcast_to(self.query_tokens, (batch, self.num_query_tokens, self.query_tokens.shape[-1]))
        mask = None
        if self.instruction_aware:
            ins = self.token_embedding(instruction_ids) + self.position_embedding(self.position_ids)
            x = ops.concat((queries, ins), axis=1)
            if instruction_mask is None:
                instruction_mask = ops.ones(instruction_ids.shape, ms.float32)
            keep = ops.concat((ops.broadcast_to(self.query_keep, (batch, self.num_query_tokens)),
                               instruction_mask.astype(ms.float32)), axis=1)
            mask = padding_mask(keep)
        else:
            x = queries
        n_states = len(vision_hidden_states)
        for k, layer in enumerate(self.layers):
            x = layer(x, vision_hidden_states[self.vision_index(k, n_states)], mask)
        return self.final_layer_norm(x[:, : self.num_query_tokens])

    # ---- initialisation from the CLIP text transformer ("CLIP-Xformer" in the paper) -----------------------------
    def init_from_text(self, text_state: Dict[str, np.ndarray]) -> list:
        """Copy SA, FFN and their layer norms of text layer k into adapter layer k, plus the token/position
        embeddings and the final layer norm. ``text_state`` uses the HF ``CLIPTextModel`` names
        (``encoder.layers.{k}.self_attn.q_proj.weight``, ...; a ``text_model.`` prefix is accepted).
        Returns the adapter parameter names that were set; cross-attention and queries keep their fresh init."""
        state = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in text_state.items()}
        n_text = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
        if n_text < len(self.layers):
            raise ValueError(f"the text transformer has {n_text} layers, the adapter needs {len(self.layers)}")
        own = dict(self.parameters_and_names())
        mapping = {}
        for ours in own:
            parts = ours.split(".")
            if parts[0] == "layers" and parts[2] in ("layer_norm1", "self_attn", "layer_norm2", "mlp"):
                mapping[ours] = "encoder." + ours
        mapping["final_layer_norm.weight"] = "final_layer_norm.weight"
        mapping["final_layer_norm.bias"] = "final_layer_norm.bias"
        if self.instruction_aware:
            mapping["token_embedding.weight"] = "embeddings.token_embedding.weight"
            mapping["position_embedding.weight"] = "embeddings.position_embedding.weight"
        done = []
        for ours, theirs in mapping.items():
            if theirs not in state:
                raise KeyError(f"text state has no {theirs!r} (needed for adapter {ours!r})")
            value = np.asarray(state[theirs], np.float32)
            if ours == "position_embedding.weight":
                value = value[: self.cfg.num_instruction_tokens]
            param = own[ours]
            if tuple(param.shape) != value.shape:
                raise ValueError(f"adapter {ours}: shape {tuple(param.shape)} != text {theirs}: {value.shape}")
            param.set_data(Tensor(value, param.dtype))
            done.append(ours)
        return done
