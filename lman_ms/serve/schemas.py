"""OpenAI chat-completions requests -> ``ChatRequest``, with every refusal a ``RequestError`` naming the key.

Accepted (``POST /v1/chat/completions``)::

    {"model": "...", "messages": [{"role": "system"|"user"|"assistant", "content": "text" | [parts]}],
     "temperature": 0.0, "top_p": 1.0, "max_tokens": 32, "stop": "..." | ["..."], "stream": false, "seed": 0,
     "task": "face_detection", "visualize": false}

Content parts: ``{"type": "text", "text": ...}`` and ``{"type": "image_url", "image_url": {"url":
"data:image/png;base64,..."}}``. A conversation carries exactly one image (L-Man's visual tokens stand once in the
prompt), in a user message; the last message is the user's question. ``system`` replaces the template's system line.
``task`` and ``visualize`` are lman extensions (the ``openai`` client sends them with ``extra_body``): the task sets
the input size and how the answer is parsed; ``visualize`` returns the picture with the answer drawn.
Temperature 0 (the default) is greedy; other OpenAI fields (``user``, ``presence_penalty`` ...) are ignored.
"""
from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from lman_ms.serve.conversation import Conversation

_DATA_URL = re.compile(r"^data:(image/[A-Za-z0-9.+-]+)?(;[^,]*)?,", re.S)
MAX_STOP = 4  # as OpenAI


class RequestError(Exception):
    """A refused request: HTTP ``status`` with the OpenAI error body ``{"error": {"message", "type"}}``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", headers=None):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.headers = headers or {}

    def body(self) -> Dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type}}


@dataclass
class ChatRequest:
    conversation: Conversation
    image: bytes
    system: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: Optional[int] = None
    stop: List[str] = field(default_factory=list)
    stream: bool = False
    task: Optional[str] = None
    visualize: bool = False
    model: Optional[str] = None


def _bad(message: str) -> RequestError:
    return RequestError(400, message)


def _number(body: dict, key: str, lo: float, hi: float, integer: bool = False):
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
        raise _bad(f"'{key}' must be {'an integer' if integer else 'a number'}, got {v!r}")
    if not lo <= v <= hi:
        raise _bad(f"'{key}' must be in [{lo}, {hi}], got {v!r}")
    return int(v) if integer else float(v)


def decode_image(url: Any, where: str, max_bytes: int) -> bytes:
    """The bytes of a base64 ``data:`` URL, checked to decode as an image; 413 when larger than ``max_bytes``."""
    if not isinstance(url, str):
        raise _bad(f"{where} must be a string")
    m = _DATA_URL.match(url)
    if not m or not (m.group(2) or "").endswith("base64"):
        raise _bad(f"{where} must be a base64 data URL (data:image/png;base64,...); this server fetches no URLs")
    payload = url[m.end():]
    if len(payload) * 3 // 4 > max_bytes:
        raise RequestError(413, f"{where}: the image is over the limit of {max_bytes} bytes",
                           "request_too_large")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _bad(f"{where}: invalid base64 ({e})") from e
    from PIL import Image
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                raise OSError("empty image")
    except Exception as e:  # PIL raises many types for bytes that are not an image
        raise _bad(f"{where}: the bytes are not a readable image ({type(e).__name__}: {e})") from e
    return raw


def _parts(content: Any, where: str) -> List[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of content parts")
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _bad(f"{where}[{j}] must be an object")
        kind = part.get("type")
        if kind not in ("text", "image_url"):
            raise _bad(f"{where}[{j}].type: unknown content type {kind!r} (text, image_url)")
    return content


def parse_chat_request(body: Any, max_image_bytes: int) -> ChatRequest:
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list")
    if body.get("n", 1) != 1:
        raise _bad("'n' must be 1: one answer per request")
    system, image, turns, pending = None, None, [], None
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object")
        role = msg.get("role")
        if role not in ("system", "user", "assistant"):
            raise _bad(f"{where}.role must be system, user or assistant, got {role!r}")
        texts = []
        for j, part in enumerate(_parts(msg.get("content"), f"{where}.content")):
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise _bad(f"{where}.content[{j}].text must be a string")
                texts.append(part["text"])
                continue
            if role != "user":
                raise _bad(f"{where}.content[{j}]: images go in user messages")
            if image is not None:
                raise _bad(f"{where}.content[{j}]: a conversation carries one image; this is the second")
            iu = part.get("image_url")
            image = decode_image(iu.get("url") if isinstance(iu, dict) else iu, f"{where}.content[{j}].image_url.url",
                                 max_image_bytes)
        text = "\n".join(t.strip() for t in texts if t.strip())
        if role == "system":
            if i != 0:
                raise _bad(f"{where}: a system message must come first")
            system = text or None
        elif role == "user":
            if pending is not None:
                raise _bad(f"{where}: two user messages in a row (expected an assistant message between them)")
            if not text:
                raise _bad(f"{where}: the instruction is empty (no text part)")
            pending = text
        else:
            if pending is None:
                raise _bad(f"{where}: an assistant message must answer a user message")
            turns.append((pending, text))
            pending = None
    if pending is None:
        raise _bad("the last message must be a user message (the question to answer)")
    if image is None:
        raise _bad("no image: add a content part {\"type\": \"image_url\", \"image_url\": {\"url\": "
                   "\"data:image/...;base64,...\"}} to a user message")
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > MAX_STOP or not all(isinstance(s, str) and s for s in stop):
        raise _bad(f"'stop' must be a non-empty string or a list of at most {MAX_STOP} of them")
    task = body.get("task")
    if task is not None and not isinstance(task, str):
        raise _bad("'task' must be a string")
    for key in ("stream", "visualize"):
        if not isinstance(body.get(key, False), bool):
            raise _bad(f"'{key}' must be true or false")
    max_tokens = _number(body, "max_tokens", 1, 1 << 20, integer=True)
    if max_tokens is None:
        max_tokens = _number(body, "max_completion_tokens", 1, 1 << 20, integer=True)
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p is not None and top_p <= 0.0:
        raise _bad("'top_p' must be in (0, 1]")
    return ChatRequest(Conversation(turns, pending), image, system=system, max_tokens=max_tokens,
                       temperature=0.0 if temperature is None else temperature,
                       top_p=1.0 if top_p is None else top_p, seed=_number(body, "seed", 0, 2 ** 63 - 1, True),
                       stop=stop, stream=body.get("stream", False), task=task,
                       visualize=body.get("visualize", False), model=body.get("model"))
