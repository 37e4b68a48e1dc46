"""A minimal Chrome DevTools Protocol client for the web-demo test: headless Chromium on a local debugging port,
driven over one websocket (the ``websockets`` package) with flattened target sessions."""
import json
import re
import shutil
import subprocess
import tempfile
import time

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser():
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


class Browser:
    def __init__(self, binary: str, timeout: float = 60.0):
        from websockets.sync.client import connect
        self.profile = tempfile.mkdtemp(prefix="lman_chromium_")
        # --no-sandbox: the test may run as root (CI containers), where Chromium refuses its sandbox
        self.proc = subprocess.Popen([binary, "--headless=new", "--no-sandbox", "--disable-gpu",
                                      "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                                      "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                                      f"--user-data-dir={self.profile}", "--window-size=1200,900", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url, deadline, seen = None, time.monotonic() + timeout, []
        while url is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            seen.append(line)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            url = m.group(1) if m else None
        if url is None:
            self.close()
            raise RuntimeError("Chromium did not start its DevTools endpoint:\n" + "".join(seen[-20:]))
        self.ws = connect(url, max_size=None, open_timeout=timeout)
        self.next_id = 0
        self.events = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, session: bool = False, timeout: float = 60.0, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") != self.next_id:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply.get("result", {})
        raise TimeoutError(f"{method}: no reply within {timeout} s")

    def page(self, method: str, **params):
        return self.call(method, session=True, **params)

    def evaluate(self, expression: str):
        res = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120.0, poll: float = 0.2):
        """Poll ``expression`` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(poll)
        raise TimeoutError(f"{expression!r} still false after {timeout} s")

    def close(self):
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(30)
            self.proc.stderr.close()
            shutil.rmtree(self.profile, ignore_errors=True)
