"""An interactive terminal chat about one image: tokens printed as they are generated, the conversation kept as
multi-turn context (``conversation``) until the model's context is full. Commands: ``/image PATH``, ``/reset``,
``/quit`` (``/help`` lists them). Runs the engine in the calling thread (no server)."""
from __future__ import annotations

import io
import sys
from typing import Callable, Iterable, Optional, TextIO

from lman_ms.serve.conversation import Conversation
from lman_ms.serve.stream import TextStream

HELP = "commands: /image PATH (ask about another image; starts over), /reset (forget the conversation), /quit"


class ContextFull(Exception):
    pass


def read_image(path: str) -> bytes:
    """The bytes of an image file, checked to decode; errors name the file."""
    from PIL import Image
    try:
        with open(path, "rb") as f:
            raw = f.read()
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the image ({e})") from e
    return raw


class ChatSession:
    def __init__(self, engine, image: Optional[bytes] = None, task: Optional[str] = None, max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float = 1.0, seed: Optional[int] = None):
        if temperature > 0 and engine.greedy_only:
            raise ValueError("an export folder decodes greedily: leave --temperature at 0")
        self.engine, self.image, self.task = engine, image, task
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self.turns = []

    def reset(self) -> None:
        self.turns = []

    def ask(self, question: str, on_text: Callable[[str], None] = lambda s: None) -> str:
        """Answer ``question`` in the context of the earlier turns, handing text to ``on_text`` as it comes."""
        if self.image is None:
            raise ValueError("no image yet: /image PATH")
        conv = Conversation(list(self.turns), question)
        prompt = self.engine.prompt_ids(conv)
        room = self.engine.room(len(prompt))
        if room < 1:
            raise ContextFull(f"the conversation ({len(prompt)} tokens after {self.engine.visual_len} visual "
                              f"positions) fills the model's context of {self.engine.context_len} tokens: /reset "
                              "to start over about this image")
        stream = TextStream(self.engine.tokenizer, max_tokens=min(self.max_new_tokens, room))

        def on_token(step, tokens, finished):
            delta = stream.push(int(tokens[0]))
            if delta:
                on_text(delta)
            return [stream.done]

        generation = {"max_new_tokens": min(self.max_new_tokens, room)}
        if self.temperature > 0:
            generation.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        pixels = self.engine.pixels(self.image, self.task)[None]
        self.engine.generate(pixels, [conv.adapter_instruction()], [prompt], generation, on_token=on_token)
        rest = stream.finish("length")
        if rest:
            on_text(rest)
        self.turns.append((question, stream.answer))
        return stream.answer


def run_chat(session: ChatSession, lines: Iterable[str], out: TextIO = sys.stdout, prompt: str = "USER> ") -> None:
    """The read-answer loop over ``lines`` (stdin's lines in the tool)."""
    def say(text: str) -> None:
        out.write(text)
        out.flush()

    say(HELP + "\n" + prompt)
    for line in lines:
        line = line.strip()
        if line in ("/quit", "/exit"):
            break
        if not line:
            pass
        elif line == "/help":
            say(HELP + "\n")
        elif line == "/reset":
            session.reset()
            say("(conversation forgotten)\n")
        elif line.startswith("/image"):
            path = line[len("/image"):].strip()
            try:
                session.image = read_image(path)
                session.reset()
                say(f"(image {path}; new conversation)\n")
            except ValueError as e:
                say(f"error: {e}\n")
        elif line.startswith("/"):
            say(f"unknown command {line.split()[0]!r}; {HELP}\n")
        else:
            try:
                say("ASSISTANT> ")
                session.ask(line, say)
                say("\n")
            except ContextFull as e:
                say(f"\n{e}\n")
            except ValueError as e:
                say(f"error: {e}\n")
        say(prompt)
    say("\n")
