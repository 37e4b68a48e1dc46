"""tools/serve.py --export_dir: the graphs of tools/export.py behind the same API (graphcell backend, greedy)."""
import os
import subprocess
import sys

from conftest import REPO, Server, chat_body, png_bytes, post, stream


def test_export_folder_serves_the_checkpoint_answers(trained, server, tmp_path):
    root, ckpt = trained
    export_dir = str(tmp_path / "export")
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"), "--ckpt", ckpt,
                          "--output_dir", export_dir, "--batch-size", "2"], capture_output=True, text=True,
                         timeout=900, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    srv = Server(None, str(tmp_path / "server.log"), "--export_dir", export_dir, "--backend", "graphcell")
    try:
        srv.wait_ready()
        url = srv.url + "/v1/chat/completions"
        bodies = [chat_body(png_bytes(i), q, max_tokens=6) for i, q in
                  enumerate(["Find every face.", "What is the facial expression of this person?", "Describe."])]
        for b in bodies:
            status, _, body = post(url, b)
            assert status == 200, body
            text = body["choices"][0]["message"]["content"]
            status, _, reference = post(server.url + "/v1/chat/completions", b)
            assert status == 200, (reference, server.tail())
            assert text == reference["choices"][0]["message"]["content"]
            assert "".join(e["choices"][0]["delta"].get("content", "") for e in stream(url, b)) == text
        status, _, body = post(url, dict(bodies[0], temperature=0.7))
        assert status == 400 and "greedily" in body["error"]["message"]
        status, _, body = post(url, dict(bodies[0], messages=[{"role": "system", "content": "Be brief."}]
                                         + bodies[0]["messages"]))
        assert status == 400 and "system line" in body["error"]["message"]
    finally:
        srv.stop()
