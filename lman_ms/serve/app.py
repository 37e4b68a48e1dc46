"""The HTTP server: FastAPI app over one ``Batcher``.

    POST /v1/chat/completions   OpenAI chat completions (``schemas``), JSON or server-sent events (``stream``)
    GET  /v1/models             the one model served
    GET  /health                liveness and batching counters
    GET  /                      the web demo (``static/``)

Refusals are JSON ``{"error": {"message", "type"}}``: 400 for bad requests, 413 over the body / image limits, 503
with ``Retry-After`` when the queue is full. The answer's structure (boxes, keypoints, labels; ``lman.structure``)
and on request (``"visualize": true``) the picture with it drawn (``lman.picture``, a PNG data URL) travel in the
extra field ``lman`` beside the OpenAI fields.
"""
from __future__ import annotations

import base64
import json
import os
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lman_ms.infer.generate import GenerationConfig
from lman_ms.serve.batching import Batcher, Job
from lman_ms.serve.schemas import ChatRequest, RequestError, parse_chat_request

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


@dataclass
class ServeLimits:
    max_batch_size: int = 8
    batch_window_s: float = 0.01     # how long the first request of a burst waits for the rest
    max_queue: int = 256             # queued requests beyond this get 503
    max_body_bytes: int = 16 << 20
    max_image_bytes: int = 10 << 20


def create_app(engine_factory: Callable[[], Any], limits: Optional[ServeLimits] = None) -> FastAPI:
    """``engine_factory`` builds the engine (``engine.load_engine``); it runs on the model thread at startup."""
    limits = limits or ServeLimits()
    batcher = Batcher(engine_factory, limits.max_batch_size, limits.batch_window_s, limits.max_queue)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        # uvicorn has finished the requests in flight (SIGTERM is a graceful shutdown); anything queued is answered
        await batcher.stop()

    app = FastAPI(title="lman_ms", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RequestError)
    async def _refused(request, err: RequestError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, err: StarletteHTTPException):
        return JSONResponse({"error": {"message": str(err.detail), "type": "invalid_request_error"}},
                            status_code=err.status_code)

    @app.get("/")
    async def index():
        return FileResponse(os.path.join(STATIC, "index.html"))

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": batcher.engine.name, **batcher.stats()}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": batcher.engine.name, "object": "model", "created": 0,
                                            "owned_by": "lman_ms"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await _read_json(request, limits.max_body_bytes)
        req = parse_chat_request(body, limits.max_image_bytes)
        job = _job(batcher.engine, req)
        batcher.submit(job)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if req.stream:
            return StreamingResponse(_sse(job, req, rid, created, batcher.engine.name),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        text = ""
        while True:
            event = await job.events.get()
            if event[0] == "delta":
                text += event[1]
            elif event[0] == "error":
                raise RequestError(500, event[1], "server_error")
            else:
                _, answer, reason, usage = event
                break
        assert text == answer, "the streamed deltas and the answer disagree"
        return {"id": rid, "object": "chat.completion", "created": created, "model": batcher.engine.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                             "finish_reason": reason}],
                "usage": usage, "lman": await _extra(answer, req)}

    return app


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the request body ({declared} bytes) is over the limit of {limit} bytes",
                           "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body is over the limit of {limit} bytes", "request_too_large")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(400, f"the request body is not valid JSON: {e}") from e


def _job(engine, req: ChatRequest) -> Job:
    """A batcher job for ``req``, after the checks that need the engine (task, sampling, context room)."""
    if req.task is not None and not engine.known_task(req.task):
        raise RequestError(400, f"'task': unknown task {req.task!r} for this model")
    if req.temperature > 0 and engine.greedy_only:
        raise RequestError(400, "this server runs an export folder, which decodes greedily: send temperature 0")
    if req.system is not None and engine.fixed_system and req.system != engine.template.system:
        raise RequestError(400, "this export folder has its system line built in; leave out the system message")
    prompt = engine.prompt_ids(req.conversation)
    room = engine.room(len(prompt), req.system)
    if room < 1:
        raise RequestError(400, f"the conversation ({len(prompt)} tokens after {engine.visual_len} visual "
                                f"positions) fills the model's context of {engine.context_len} tokens; start a "
                                "new conversation", "context_length_exceeded")
    max_tokens = req.max_tokens or GenerationConfig().max_new_tokens
    return Job(image=req.image, task=req.task, adapter_text=req.conversation.adapter_instruction(), prompt=prompt,
               max_tokens=min(max_tokens, room), stop=req.stop, sampling=(req.temperature, req.top_p, req.seed),
               system=req.system)


async def _extra(answer: str, req: ChatRequest) -> Dict[str, Any]:
    from lman_ms.infer.structured import structure
    out: Dict[str, Any] = {"structure": structure(answer, req.task)}
    if req.visualize:
        out["picture"] = await run_in_threadpool(_picture, req.image, answer, out["structure"]["task"])
    return out


def _picture(image: bytes, answer: str, task: str) -> str:
    """The answer drawn on the image by ``lman_ms.infer.show`` (the tools' visualiser), as a PNG data URL."""
    from lman_ms.infer.show import show_answer
    with tempfile.TemporaryDirectory(prefix="lman_serve_") as tmp:
        src, dst = os.path.join(tmp, "image"), os.path.join(tmp, "answer.png")
        with open(src, "wb") as f:
            f.write(image)
        show_answer(src, answer, dst, task)
        with open(dst, "rb") as f:
            return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _chunk(rid: str, created: int, model: str, delta: dict, reason: Optional[str] = None, **extra) -> str:
    data = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}], **extra}
    return f"data: {json.dumps(data)}\n\n"


async def _sse(job: Job, req: ChatRequest, rid: str, created: int, model: str):
    try:
        yield _chunk(rid, created, model, {"role": "assistant", "content": ""})
        while True:
            event = await job.events.get()
            if event[0] == "delta":
                yield _chunk(rid, created, model, {"content": event[1]})
            elif event[0] == "error":
                yield f"data: {json.dumps({'error': {'message': event[1], 'type': 'server_error'}})}\n\n"
                break
            else:
                _, answer, reason, usage = event
                yield _chunk(rid, created, model, {}, reason, usage=usage, lman=await _extra(answer, req))
                break
        yield "data: [DONE]\n\n"
    finally:
        # a client that left mid-stream: its row stops at the next decoding step (or is never started)
        job.cancelled = True
