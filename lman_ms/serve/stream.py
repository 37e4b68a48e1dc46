"""Token ids -> text deltas for one answer, with stop strings: what a streamed answer sends is, joined, exactly the
text of the whole answer (``tokenizer.decode(ids).strip()``, as the predictor returns it, cut at the first stop)."""
from __future__ import annotations

from typing import List, Optional, Sequence


class TextStream:
    def __init__(self, tokenizer, stop: Sequence[str] = (), max_tokens: Optional[int] = None):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.max_tokens = max_tokens
        self.ids: List[int] = []
        self.text = ""          # the answer so far, cut at a stop string
        self.sent = 0           # characters of ``text`` already handed out
        self.finish_reason: Optional[str] = None  # "stop" (EOS or a stop string) or "length"
        self._special = {tokenizer.eos_id}

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def push(self, token: int) -> str:
        """Take one generated id; returns the text that is now safe to send (possibly empty)."""
        if self.done:
            return ""
        if token in self._special:
            self.finish_reason = "stop"
            return ""
        self.ids.append(int(token))
        text = self.tokenizer.decode(self.ids).lstrip()
        hits = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if hits:
            text = text[:min(hits)]
            self.finish_reason = "stop"
        elif self.max_tokens is not None and len(self.ids) >= self.max_tokens:
            self.finish_reason = "length"
        self.text = text
        return self._release(final=self.done)

    def finish(self, reason: str = "length") -> str:
        """End the answer (the generator stopped); returns the rest of the text."""
        if self.finish_reason is None:
            self.finish_reason = reason
        return self._release(final=True)

    @property
    def answer(self) -> str:
        return self.text.strip()

    def _release(self, final: bool) -> str:
        if final:
            safe = len(self.answer)
        else:
            # hold back: trailing spaces (the final answer is stripped), a partly decoded UTF-8 character (byte
            # fallback pieces decode to U+FFFD until complete) and whatever could still become a stop string
            safe = len(self.text.rstrip())
            bad = self.text.find("\ufffd")
            if bad >= 0:
                safe = min(safe, bad)
            if self.stop:
                safe = min(safe, len(self.text) - max(len(s) for s in self.stop) + 1)
        if safe <= self.sent:
            return ""
        delta = self.text[self.sent:safe]
        self.sent = safe
        return delta
