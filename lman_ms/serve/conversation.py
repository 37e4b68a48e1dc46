"""Multi-turn prompts in the Vicuna v1.1 template, continuing the single-turn layout of stage-2 training.

    [BOS "{system} USER:" ; visual tokens ; "\\n{q1} ASSISTANT:" " {a1}" EOS "USER: {q2} ASSISTANT:" ...]

The first turn is tokenised exactly as ``encode_sample`` tokenises a training sample (prompt + " " + answer +
EOS), so a one-turn conversation is the predictor's prompt, id for id. Later turns follow Vicuna v1.1
(``</s>USER: ... ASSISTANT:``). The visual tokens are computed once, by the instruction-aware adapter reading the
question being answered now (the adapter was trained to extract what the current instruction asks about).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

from lman_ms.data.conversation import VicunaTemplate


@dataclass
class Conversation:
    turns: List[Tuple[str, str]] = field(default_factory=list)  # answered (question, answer) pairs, in order
    question: str = ""                                          # the question to answer now

    def adapter_instruction(self) -> str:
        """The text the query adapter reads with the image: the current question."""
        return self.question


def prompt_ids(tokenizer, template: VicunaTemplate, conv: Conversation) -> List[int]:
    """Token ids after the visual tokens for ``conv`` (no BOS: the prefix ``"{system} USER:"`` holds it)."""
    if not conv.question.strip():
        raise ValueError("the last user message has no text")
    ids: List[int] = []
    questions = [q for q, _ in conv.turns] + [conv.question]
    for i, q in enumerate(questions):
        head = template.prompt(q) if i == 0 else f"{template.user} {q.strip()} {template.assistant}"
        if i < len(conv.turns):
            ids += tokenizer.encode(head + " " + conv.turns[i][1].strip(), bos=False, eos=True)
        else:
            ids += tokenizer.encode(head, bos=False, eos=False)
    return ids


def conversation_text(template: VicunaTemplate, conv: Conversation) -> str:
    """The whole prompt as text, ``<image>`` where the visual tokens go (for logs and the chat's /history)."""
    text = template.full_prompt(conv.turns[0][0] if conv.turns else conv.question)
    for i, (q, a) in enumerate(conv.turns):
        if i:
            text += f"{template.user} {q.strip()} {template.assistant}"
        text += f" {a.strip()}</s>"
    if conv.turns:
        text += f"{template.user} {conv.question.strip()} {template.assistant}"
    return text
