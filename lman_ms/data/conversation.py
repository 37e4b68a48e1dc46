"""The Vicuna v1.1 conversation template and stage-2 tokenisation with the answer-only label mask (eq. 8).

A sample becomes ``[prefix ; visual tokens ; text]`` where
    prefix = BOS + "{system} USER:"                (the same ids for every sample)
    text   = "\\n{instruction} ASSISTANT:" + " {answer}" + EOS
The visual tokens stand where Vicuna-style templates put ``<image>``. Labels are IGNORE_INDEX on the prefix, the
visual positions and the instruction, and the answer ids (with EOS) elsewhere.

Self-check (a known silent failure of LLaVA-style code is a loss that is quietly 0): the tokenised prompt must be
an exact prefix of the tokenised prompt+answer (template and tokenizer agree), and at least one answer token must
survive truncation; otherwise :class:`TokenizationError` names the record id.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from lman_ms.data.masking import IGNORE_INDEX

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")


class TokenizationError(ValueError):
    pass


@dataclass
class VicunaTemplate:
    system: str = SYSTEM
    user: str = "USER:"
    assistant: str = "ASSISTANT:"

    def prefix(self) -> str:
        return f"{self.system} {self.user}"

    def prompt(self, instruction: str) -> str:
        return f"\n{instruction.strip()} {self.assistant}"

    def full_prompt(self, instruction: str) -> str:
        """The whole prompt as text, with ``<image>`` where the visual tokens go (for display and logs)."""
        return f"{self.prefix()} <image>{self.prompt(instruction)}"


def template_from_config(cfg) -> VicunaTemplate:
    """The template of a config: Vicuna v1.1, with ``data.system_prompt`` replacing the system line if set."""
    if cfg.data.system_prompt is None:
        return VicunaTemplate()
    return VicunaTemplate(system=cfg.data.system_prompt)


def prefix_ids(tokenizer, template: VicunaTemplate = VicunaTemplate()) -> np.ndarray:
    return np.asarray(tokenizer.encode(template.prefix(), bos=True, eos=False), np.int32)


def encode_sample(tokenizer, instruction: str, answer: str, max_length: int, record_id: str = "?",
                  template: VicunaTemplate = VicunaTemplate()) -> Tuple[List[int], List[int]]:
    """Token ids of the text part and their labels (answer tokens only), truncated to ``max_length``."""
    prompt = tokenizer.encode(template.prompt(instruction), bos=False, eos=False)
    full = tokenizer.encode(template.prompt(instruction) + " " + answer.strip(), bos=False, eos=True)
    if full[: len(prompt)] != prompt:
        raise TokenizationError(f"record {record_id}: the tokenised prompt is not a prefix of prompt+answer; the "
                                f"template and the tokenizer disagree at the boundary ({prompt[-3:]} vs "
                                f"{full[len(prompt) - 3:len(prompt)]})")
    if len(full) == len(prompt):
        raise TokenizationError(f"record {record_id}: the answer tokenises to nothing")
    labels = [IGNORE_INDEX] * len(prompt) + full[len(prompt):]
    ids, labels = full[:max_length], labels[:max_length]
    if all(t == IGNORE_INDEX for t in labels):
        raise TokenizationError(f"record {record_id}: every answer token is cut by max_text_length={max_length} "
                                f"(prompt has {len(prompt)} tokens); raise train.max_text_length")
    return ids, labels
