"""The real server (tools/serve.py on 127.0.0.1, a free port) over a briefly trained tiny checkpoint: concurrent
requests batched and answered as their sequential twins, streaming equal to non-streaming, multi-turn, every bad
input refused with its code while the server keeps answering, a full queue, a client that leaves, SIGTERM."""
import base64
import concurrent.futures as cf
import http.client
import json
import time
import urllib.error
import urllib.request

from conftest import Server, chat_body, data_url, png_bytes, post, stream

QUESTIONS = ["Find every face.", "What is the facial expression of this person?", "Describe this image.",
             "Where are the pedestrians?"]


def _requests(n):
    return [chat_body(png_bytes(i), QUESTIONS[i % len(QUESTIONS)], max_tokens=6 + i % 5) for i in range(n)]


def _health(url):
    with urllib.request.urlopen(url + "/health", timeout=30) as r:
        return json.loads(r.read())


def _content(resp):
    status, _, body = resp
    assert status == 200, body
    return body["choices"][0]["message"]["content"]


def test_concurrent_requests_are_batched_and_equal_their_sequential_twins(server):
    url = server.url + "/v1/chat/completions"
    bodies = _requests(24)
    sequential = [_content(post(url, b)) for b in bodies]
    batches_before = _health(server.url)["batches"]
    with cf.ThreadPoolExecutor(24) as pool:
        concurrent = [_content(r) for r in pool.map(lambda b: post(url, b), bodies)]
    assert concurrent == sequential
    health = _health(server.url)
    assert health["largest_batch"] > 1                       # answered together, not one by one
    assert health["batches"] - batches_before < len(bodies)
    assert len(set(sequential)) > 1                          # the requests really differ


def test_response_format_models_and_structure(server):
    status, _, body = post(server.url + "/v1/chat/completions",
                           chat_body(png_bytes(3), "Find every face.", task=None, visualize=True))
    assert status == 200
    assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] >= 1
    assert set(body["lman"]["structure"]) == {"task", "boxes", "keypoints", "labels"}
    picture = body["lman"]["picture"]
    assert picture.startswith("data:image/png;base64,")
    from PIL import Image
    import io
    with Image.open(io.BytesIO(base64.b64decode(picture.split(",", 1)[1]))) as im:
        assert im.size == (48, 48)
    with urllib.request.urlopen(server.url + "/v1/models", timeout=30) as r:
        models = json.loads(r.read())
    assert models["object"] == "list" and models["data"][0]["id"] == "lman-tiny" == body["model"]


def test_streaming_returns_the_non_streaming_text(server):
    url = server.url + "/v1/chat/completions"
    for i, b in enumerate(_requests(4)):
        b["max_tokens"] = 12
        events = stream(url, b)
        assert events[0]["choices"][0]["delta"]["role"] == "assistant"
        assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        assert "structure" in events[-1]["lman"]
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
        assert text == _content(post(url, b))
        assert len([e for e in events if e["choices"][0]["delta"].get("content")]) >= 1


def test_stop_strings_cut_the_answer_in_both_modes(server):
    url = server.url + "/v1/chat/completions"
    b = chat_body(png_bytes(5), QUESTIONS[1], max_tokens=12)
    full = _content(post(url, b))
    cut = next((c for c in full[2:] if not c.isspace()), None)
    assert cut is not None, full
    b["stop"] = [cut]
    expected = full[:full.index(cut)].strip()      # the answer ends before the stop string's first occurrence
    status, _, body = post(url, b)
    assert status == 200 and body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["content"] == expected
    events = stream(url, b)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == expected


def test_multi_turn_conversation(server):
    url = server.url + "/v1/chat/completions"
    first = chat_body(png_bytes(7), "Find every face.")
    answer = _content(post(url, first))
    follow = dict(first, messages=first["messages"] + [{"role": "assistant", "content": answer},
                                                       {"role": "user", "content": "And the expression?"}])
    status, _, body = post(url, follow)
    assert status == 200
    # a longer prompt: the earlier turn is in it
    assert body["usage"]["prompt_tokens"] > post(url, first)[2]["usage"]["prompt_tokens"]
    events = stream(url, follow)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == \
        body["choices"][0]["message"]["content"]


def _raw_post(server, data: bytes):
    return post(server.url + "/v1/chat/completions", None, raw=data)


def _declared_body(server, length):
    """A POST that announces ``length`` bytes and sends none: the server must refuse it from the header alone (a
    client sending the bytes could see the connection closed under it, as with any server that refuses early)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.putrequest("POST", "/v1/chat/completions")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, dict(resp.headers), json.loads(resp.read())
    finally:
        conn.close()


def test_bad_input_is_refused_with_its_code_and_the_server_keeps_answering(server):
    ok = chat_body(png_bytes(1), "Find every face.")
    url = server.url + "/v1/chat/completions"
    text_only = dict(ok, messages=[{"role": "user", "content": "Find every face."}])
    not_image = chat_body(png_bytes(1), "x")
    not_image["messages"][0]["content"][0]["image_url"]["url"] = data_url(b"this is not an image at all")
    empty = chat_body(png_bytes(1), "   ")
    unknown = chat_body(png_bytes(1), "Find every face.")
    unknown["messages"][0]["content"].append({"type": "input_audio", "input_audio": {"data": ""}})
    bad_b64 = chat_body(png_bytes(1), "x")
    bad_b64["messages"][0]["content"][0]["image_url"]["url"] = "data:image/png;base64,@@@@"
    remote = chat_body(png_bytes(1), "x")
    remote["messages"][0]["content"][0]["image_url"]["url"] = "http://example.com/a.png"
    big_image = chat_body(b"\0" * (600 << 10), "x")                # over --max-image-mb 0.5
    two_images = chat_body(png_bytes(1), "x")
    two_images["messages"][0]["content"].append(two_images["messages"][0]["content"][0])
    two_users = dict(ok, messages=[{"role": "user", "content": "Hello."}] + ok["messages"])
    cases = [
        (_raw_post(server, b"{not json"), 400, "not valid JSON"),
        (_raw_post(server, b"[1, 2]"), 400, "JSON object"),
        (post(url, text_only), 400, "no image"),
        (post(url, not_image), 400, "not a readable image"),
        (post(url, empty), 400, "instruction is empty"),
        (post(url, unknown), 400, "unknown content type 'input_audio'"),
        (post(url, bad_b64), 400, "invalid base64"),
        (post(url, remote), 400, "base64 data URL"),
        (post(url, dict(ok, temperature="hot")), 400, "'temperature'"),
        (post(url, dict(ok, max_tokens=0)), 400, "'max_tokens'"),
        (post(url, dict(ok, task="juggling")), 400, "unknown task"),
        (post(url, dict(ok, messages=ok["messages"] + [{"role": "assistant", "content": "hi"}])), 400,
         "last message must be a user message"),
        (post(url, big_image), 413, "over the limit"),
        (_declared_body(server, 2 << 20), 413, "over the limit"),      # over --max-body-mb 1, refused unread
        (post(url, two_images), 400, "carries one image"),
        (post(url, two_users), 400, "two user messages in a row"),
        (post(url, chat_body(png_bytes(1), "Where is the square? " * 120)), 400, "fills the model's context"),
    ]
    for (status, _, body), code, words in cases:
        assert status == code, (words, body)
        assert set(body["error"]) == {"message", "type"} and words in body["error"]["message"], body
    try:
        urllib.request.urlopen(server.url + "/nowhere", timeout=30)
        raise AssertionError("/nowhere answered")
    except urllib.error.HTTPError as e:
        assert e.code == 404 and "message" in json.loads(e.read())["error"]
    assert _content(post(url, ok))


def test_a_client_that_leaves_mid_stream_costs_its_row(server):
    before = _health(server.url)["abandoned"]
    body = json.dumps(chat_body(png_bytes(9), QUESTIONS[0], max_tokens=200, stream=True)).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    resp.fp.readline()                         # the first event, then hang up
    conn.sock.close()
    conn.close()
    deadline = time.monotonic() + 60
    while _health(server.url)["abandoned"] == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _health(server.url)["abandoned"] > before
    assert _content(post(server.url + "/v1/chat/completions", chat_body(png_bytes(1), QUESTIONS[0])))


def test_full_queue_gets_503_and_sigterm_finishes_requests_in_flight(trained, tmp_path):
    root, ckpt = trained
    srv = Server(ckpt, str(tmp_path / "server.log"), "--max-batch-size", "1", "--max-queue", "1")
    try:
        srv.wait_ready()
        url = srv.url + "/v1/chat/completions"
        assert _content(post(url, chat_body(png_bytes(0), QUESTIONS[0], max_tokens=4)))   # compiled
        bodies = [chat_body(png_bytes(i), QUESTIONS[0], max_tokens=120) for i in range(8)]
        with cf.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda b: post(url, b), bodies))
        codes = [status for status, _, _ in results]
        assert 503 in codes and 200 in codes, codes
        for status, headers, body in results:
            if status == 503:
                assert headers.get("retry-after") == "1" and body["error"]["type"] == "server_busy"
        # SIGTERM while a request is being answered: it still gets its answer, then the server exits
        with cf.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post, url, bodies[0])
            deadline = time.monotonic() + 60
            while _health(srv.url)["running"] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            srv.proc.terminate()
            status, _, body = pending.result(timeout=120)
        assert status == 200 and body["choices"][0]["message"]["content"]
        srv.proc.wait(120)
        assert "Finished server process" in srv.tail()
    finally:
        srv.stop()


def test_load_test_client_counts_tokens_and_finds_no_mismatch(server, tmp_path):
    from lman_ms.serve.loadtest import format_table, main
    out = tmp_path / "load.json"
    assert main(["--url", server.url, "--clients", "1", "4", "--requests", "8", "--max-tokens", "5",
                 "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    seq = result["sequential"]
    assert seq["requests"] == 8 and 8 <= seq["tokens"] <= 40 and not seq["errors"]
    assert [r["clients"] for r in result["runs"]] == [1, 4]
    for r in result["runs"]:
        assert r["tokens"] == seq["tokens"] and r["mismatches"] == 0 and not r["errors"]
        assert r["ttft_p50_s"] <= r["latency_p50_s"]
    assert "| 4 |" in format_table(result)
