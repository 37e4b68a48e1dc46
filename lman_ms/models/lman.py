"""L-Man: CLIP ViT (eq. 1) -> query adapter (eq. 2) -> projection -> Vicuna, with the stage-1 heads (eq. 3-7).

Shapes (B batch, Nq query tokens, D adapter width, H LLM width):
    pixel_values (B, 3, S, S) -> vision hidden states V_0..V_2m, each (B, 1 + (S/p)^2, Dv)
    -> adapter (B, Nq, D) -> language_projection (B, Nq, H): the visual tokens in the LLM's embedding space.

Stage 2 builds the LLM input as [prefix ; visual tokens ; text]: ``prefix_ids`` is the conversation template up to
the image placeholder (the same ids for every sample, so the visual tokens sit at a fixed position and graph mode
sees static shapes), ``input_ids`` the rest of the conversation (instruction, answer, right padding).
"""
from __future__ import annotations

from typing import Optional

import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import Normal

from lman_ms.config import LManConfig
from lman_ms.data.masking import IGNORE_INDEX

from .adapter import QueryAdapter
from .layers import LayerNorm, activation
from .losses import LogitScale, causal_lm_loss, contrastive_loss, vision_grounded_mlm_loss


class VmlmHead(nn.Cell):
    """Prediction head of L_vmlm, eq. (6): [h_t ; V_g] -> dense -> GELU -> LN -> vocabulary."""

    def __init__(self, text_width: int, embed_dim: int, vocab_size: int, eps: float = 1e-5):
        super().__init__()
        self.dense = nn.Dense(text_width + embed_dim, text_width)
        self.act = activation("gelu")
        self.layer_norm = LayerNorm(text_width, eps)
        self.decoder = nn.Dense(text_width, vocab_size)

    def construct(self, h_t, v_g):
        v = ops.broadcast_to(v_g.expand_dims(1), (h_t.shape[0], h_t.shape[1], v_g.shape[-1]))
        return self.decoder(self.layer_norm(self.act(self.dense(ops.concat((h_t, v), -1)))))


class LMan(nn.Cell):
    """The whole model. ``stage`` picks the parts that are built: stage 1 needs the frozen CLIP text encoder and
    the stage-1 heads but no LLM; stage 2 (and inference) needs the LLM and the projection but no text encoder."""

    def __init__(self, config: LManConfig, stage: Optional[int] = None):
        super().__init__()
        from .vision import CLIPVisionEncoder  # imported here: each tower pulls in its own library (mindcv, ...)
        self.config = config
        self.stage = config.train.stage if stage is None else stage
        self.vision_model = CLIPVisionEncoder(config.vision)
        self.adapter = QueryAdapter(config.adapter, config.text)
        a, loss = config.adapter, config.loss
        if self.stage == 1:
            from .text import CLIPTextEncoder
            self.text_model = CLIPTextEncoder(config.text)
            self.vision_proj = nn.Dense(a.hidden_size, loss.embed_dim)      # V_g projection, eq. (3)
            self.logit_scale = LogitScale(loss.temperature, loss.learnable_temperature, loss.max_logit_scale)
            self.vmlm_head = VmlmHead(config.text.hidden_size, loss.embed_dim, config.text.vocab_size,
                                      config.text.layer_norm_eps)
            self.use_lic, self.use_vmlm, self.vmlm_weight = loss.lic, loss.vmlm, loss.vmlm_weight
        else:
            from .llm import VicunaDecoder
            # N(0, initializer_range) with a zero bias, as HF InstructBLIP initialises it: the visual tokens then
            # start near the scale of the LLM's token embeddings. Behind the LLM's RMSNorm only the direction of
            # a token counts, so a token 80x larger than the embeddings (the default Dense init) turned the same
            # learning rate into an 80x smaller effective step for the visual path (docs/decisions.md).
            self.language_projection = nn.Dense(a.hidden_size, config.llm.hidden_size,
                                                weight_init=Normal(a.initializer_range), bias_init="zeros")
            self.llm = VicunaDecoder(config.llm)

    # ---- shared ------------------------------------------------------------------------------------------------
    def visual_tokens(self, pixel_values, instruction_ids=None, instruction_mask=None):
        """Adapter output (B, Nq, D) from the image and the CLIP-tokenised instruction."""
        states = self.vision_model(pixel_values)
        return self.adapter(states, instruction_ids, instruction_mask)

    # ---- stage 1: multi-modal representation learning -----------------------------------------------------------
    def global_visual_embedding(self, visual):
        """V_g: mean-pooled visual tokens, projected to the text embedding width."""
        return self.vision_proj(visual.mean(1))

    def stage1_loss(self, pixel_values, instruction_ids, instruction_mask, caption_ids, caption_mask,
                    masked_ids, mlm_labels):
        """L = L_lic + lambda * L_vmlm, eq. (7). Returns (loss, L_lic, L_vmlm)."""
        v_g = self.global_visual_embedding(self.visual_tokens(pixel_values, instruction_ids, instruction_mask))
        zero = ops.zeros((), ms.float32)
        l_lic, l_vmlm = zero, zero
        if self.use_lic:
            _, t_g = self.text_model(caption_ids, caption_mask)
            l_lic, _ = contrastive_loss(v_g, t_g, self.logit_scale())
        if self.use_vmlm:
            h_t, _ = self.text_model(masked_ids, caption_mask)
            l_vmlm = vision_grounded_mlm_loss(self.vmlm_head(h_t, v_g), mlm_labels)
        return l_lic + self.vmlm_weight * l_vmlm, l_lic, l_vmlm

    # ---- stage 2: instruction tuning -------------------------------------------------------------------------
    def multimodal_embeddings(self, pixel_values, instruction_ids, instruction_mask, prefix_ids, input_ids,
                              attention_mask):
        """Z_ins in the LLM's embedding space: [prefix ; projected visual tokens ; text], and its mask."""
        visual = self.language_projection(self.visual_tokens(pixel_values, instruction_ids, instruction_mask))
        batch = input_ids.shape[0]
        prefix = ops.broadcast_to(prefix_ids, (batch, prefix_ids.shape[-1]))
        embeds = ops.concat((self.llm.embed_tokens(prefix), visual.astype(ms.float32),
                             self.llm.embed_tokens(input_ids)), axis=1)
        ones = ops.ones((batch, prefix.shape[1] + visual.shape[1]), attention_mask.dtype)
        return embeds, ops.concat((ones, attention_mask), axis=1)

    def stage2_logits(self, pixel_values, instruction_ids, instruction_mask, prefix_ids, input_ids, attention_mask,
                      logits_from: int = 0):
        embeds, mask = self.multimodal_embeddings(pixel_values, instruction_ids, instruction_mask, prefix_ids,
                                                  input_ids, attention_mask)
        return self.llm(input_embeds=embeds, attention_mask=mask, logits_from=logits_from)

    def stage2_loss(self, pixel_values, instruction_ids, instruction_mask, prefix_ids, input_ids, attention_mask,
                    labels):
        """Eq. (8) on the answer tokens; the prefix and visual positions carry IGNORE_INDEX labels.

        Logits start at the last visual position (the first one whose prediction, of text token 0, has a label
        slot): the prefix and the other visual positions only predict visual positions, which never carry a label,
        so leaving them out of the LM head gives the same loss and gradients for less work."""
        start = prefix_ids.shape[-1] + self.adapter.num_query_tokens - 1
        logits = self.stage2_logits(pixel_values, instruction_ids, instruction_mask, prefix_ids, input_ids,
                                    attention_mask, logits_from=start)
        ignore = ops.fill(labels.dtype, (labels.shape[0], 1), IGNORE_INDEX)
        return causal_lm_loss(logits, ops.concat((ignore, labels), axis=1))


class Stage1LossCell(nn.Cell):
    """Graph-mode entry for stage 1: returns the total loss and its two terms."""

    def __init__(self, model: LMan):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, pixel_values, instruction_ids, instruction_mask, caption_ids, caption_mask, masked_ids,
                  mlm_labels):
        return self.model.stage1_loss(pixel_values, instruction_ids, instruction_mask, caption_ids, caption_mask,
                                      masked_ids, mlm_labels)


class Stage2LossCell(nn.Cell):
    """Graph-mode entry for stage 2: returns the loss of eq. (8)."""

    def __init__(self, model: LMan):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, pixel_values, instruction_ids, instruction_mask, prefix_ids, input_ids, attention_mask,
                  labels):
        return self.model.stage2_loss(pixel_values, instruction_ids, instruction_mask, prefix_ids, input_ids,
                                      attention_mask, labels)
