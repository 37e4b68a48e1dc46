"""CLIP text transformer: the frozen stage-1 text encoder that gives T_g in eq. (3)-(5) and h_t in eq. (6).

Same computation and HF parameter names as ``CLIPTextModelWithProjection`` (``embeddings.token_embedding``,
``encoder.layers.{i}.self_attn.{q,k,v,out}_proj``, ``layer_norm1/2``, ``mlp.fc1/fc2``, ``final_layer_norm``,
``text_projection``), so text conversion is the identity map after dropping HF's ``text_model.`` prefix and the query
adapter can copy these layers by name (its SA/FFN start from them, DESIGN.md section 1).
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from lman_ms.config import TextConfig
from lman_ms.models.layers import CLIPEncoderLayer, Embedding, LayerNorm, causal_mask, padding_mask

LEGACY_EOS_TOKEN_ID = 2  # configs saved before transformers PR #24773: pool at argmax(input_ids) instead


class CLIPTextEmbeddings(nn.Cell):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.token_embedding = Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = Embedding(config.max_position_embeddings, config.hidden_size, init_std=0.01)

    def construct(self, input_ids):
        positions = ops.arange(input_ids.shape[1]).astype(ms.int32)
        return self.token_embedding(input_ids) + self.position_embedding(positions).expand_dims(0)


class CLIPTextEncoderStack(nn.Cell):
    """``encoder.layers.{i}``; a cell of its own so that parameter names carry HF's ``encoder.`` prefix."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.layers = nn.CellList([
            CLIPEncoderLayer(config.hidden_size, config.num_attention_heads, config.intermediate_size,
                             config.layer_norm_eps, config.hidden_act)
            for _ in range(config.num_hidden_layers)])

    def construct(self, hidden_states, attn_mask):
        for layer in self.layers:
            hidden_states = layer(hidden_states, attn_mask)
        return hidden_states


class CLIPTextEncoder(nn.Cell):
    """input_ids (B, T) [+ attention_mask (B, T) of 1/0] -> (last_hidden_state (B, T, D), text_embeds (B, P)).

    Causal self-attention; ``last_hidden_state`` is after ``final_layer_norm``; the pooled token is the first
    ``eos_token_id`` of each row (HF's rule), or the largest token id when the config carries the legacy
    ``eos_token_id == 2``; ``text_embeds`` = ``text_projection`` (no bias) of the pooled token."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPTextEncoderStack(config)
        self.final_layer_norm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.text_projection = nn.Dense(config.hidden_size, config.projection_dim, has_bias=False)
        self.eos_token_id = config.eos_token_id
        self.causal = causal_mask(config.max_position_embeddings)

    def pooling_index(self, input_ids):
        """(B,) position of the first pooling token of each row; 0 when a row has none (torch argmax of zeros)."""
        if self.eos_token_id == LEGACY_EOS_TOKEN_ID:
            target = input_ids.max(axis=-1, keepdims=True)
        else:
            target = self.eos_token_id
        length = input_ids.shape[1]
        positions = ops.arange(length).astype(ms.int32).reshape(1, length)
        # first match = smallest position among matches; non-matches count as `length`
        first = ops.where(input_ids == target, positions, length).min(axis=-1)
        return ops.where(first == length, 0, first)

    def construct(self, input_ids, attention_mask=None):
        length = input_ids.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(f"CLIPTextEncoder: {length} tokens exceed max_position_embeddings "
                             f"({self.config.max_position_embeddings})")
        hidden = self.embeddings(input_ids)
        mask = self.causal[:, :, :length, :length]
        if attention_mask is not None:
            mask = mask + padding_mask(attention_mask)
        hidden = self.encoder(hidden, mask.astype(hidden.dtype))
        last_hidden_state = self.final_layer_norm(hidden)
        b, d = last_hidden_state.shape[0], last_hidden_state.shape[2]
        flat_index = ops.arange(b).astype(ms.int32) * length + self.pooling_index(input_ids).astype(ms.int32)
        pooled = ops.gather(last_hidden_state.reshape(b * length, d), flat_index, 0)
        return last_hidden_state, self.text_projection(pooled)

    @classmethod
    def from_hf(cls, hf_dir: str, progress: bool = False) -> "CLIPTextEncoder":
        """Build from an HF ``CLIPTextModelWithProjection`` or full ``CLIPModel`` folder."""
        from lman_ms.convert.clip import clip_configs_from_hf, load_text_weights
        from lman_ms.convert.common import CheckpointError

        _, _, config, _ = clip_configs_from_hf(hf_dir)
        if config is None:
            raise CheckpointError(f"{hf_dir}: a CLIP vision model folder has no text tower")
        model = cls(config)
        load_text_weights(model, hf_dir, progress)
        return model
