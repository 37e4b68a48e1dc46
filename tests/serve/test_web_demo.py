"""The web demo in a real headless Chromium: load the page from the server, upload an image through the file
input, pick a task, submit, wait for the streamed answer and the drawn picture, save a screenshot
(``LMAN_SCREENSHOT_DIR`` keeps it; scripts/run_browser_test.sh sets it). Skipped, with the reason, where no
Chromium binary or no ``websockets`` package is found: this test installs nothing."""
import base64
import io
import json
import os
import urllib.request

import numpy as np
import pytest
from PIL import Image

from cdp import Browser, find_browser


@pytest.fixture(scope="module")
def browser():
    binary = find_browser()
    if binary is None:
        pytest.skip("no Chromium binary on PATH (chromium, chromium-browser, google-chrome); on Debian: "
                    "apt-get install -y chromium")
    pytest.importorskip("websockets.sync.client", reason="the websockets package (>= 12) drives Chromium")
    b = Browser(binary)
    try:
        yield b
    finally:
        b.close()


def _photo(path):
    arr = np.full((240, 320, 3), (90, 120, 140), np.uint8)
    arr[60:180, 100:200] = (220, 40, 40)
    Image.fromarray(arr).save(path)


def test_upload_ask_and_see_the_answer_and_picture(server, browser, tmp_path):
    image = tmp_path / "person.png"
    _photo(image)
    b = browser
    b.page("Page.enable")
    b.page("Page.navigate", url=server.url + "/")
    b.wait_for("document.readyState === 'complete' && document.querySelector('#preset').options.length > 0")
    root = b.page("DOM.getDocument")["root"]["nodeId"]
    node = b.page("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    b.page("DOM.setFileInputFiles", nodeId=node, files=[str(image)])      # the file chooser's upload path
    b.wait_for("!document.querySelector('#submit').disabled")
    b.evaluate("const p = document.querySelector('#preset'); p.value = 'face_detection';"
               "p.dispatchEvent(new Event('change')); true")
    instruction = b.evaluate("document.querySelector('#instruction').value")
    assert "width and a height of 320 and 240" in instruction       # the preset took the uploaded image's size
    b.evaluate("document.querySelector('#max-tokens').value = '12'; document.querySelector('#submit').click(); true")
    state = b.wait_for("['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state",
                       timeout=180)
    status = b.evaluate("document.querySelector('#status').textContent")
    assert state == "done", status
    answer = b.evaluate("document.querySelector('#answer').textContent")
    picture = b.evaluate("document.querySelector('#picture').hidden ? '' : document.querySelector('#picture').src")
    structure = json.loads(b.evaluate("document.querySelector('#structure').textContent"))
    assert answer.strip() and structure["task"] == "face_detection"
    assert picture.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(picture.split(",", 1)[1]))) as drawn:
        assert drawn.size == (320, 240)
    # the page showed what the API answers for the same request
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(
            image.read_bytes()).decode()}}, {"type": "text", "text": instruction}]}], "max_tokens": 12,
        "task": "face_detection"}
    req = urllib.request.Request(server.url + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        assert json.loads(r.read())["choices"][0]["message"]["content"] == answer
    shot = base64.b64decode(b.page("Page.captureScreenshot", format="png")["data"])
    with Image.open(io.BytesIO(shot)) as im:
        assert im.size[0] > 0 and im.size[1] > 0
    out_dir = os.environ.get("LMAN_SCREENSHOT_DIR") or str(tmp_path)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "web_demo.png"), "wb") as f:
        f.write(shot)
