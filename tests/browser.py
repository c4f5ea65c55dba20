"""Open a page in headless Chromium over the DevTools protocol: what it logged, what it asked the
network for, whether its plots drew, and a screenshot.

Debian's ``chromium`` (``.ci/run`` installs it as root); as root it needs ``--no-sandbox``.
The protocol is spoken over a WebSocket with aiohttp (already a dependency), so no browser
driver is installed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium() -> str | None:
    """The browser's path, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageCheck:
    """What happened while a page loaded."""

    console_errors: list = field(default_factory=list)
    requests: list = field(default_factory=list)  # every URL the page asked for, besides itself and data: URLs
    figures: list = field(default_factory=list)  # {"name", "empty", "drawn", "width"}
    title: str = ""


# Each figure's image: decoded and drawn with a size (a broken image has naturalWidth 0).
_FIGURES_JS = """JSON.stringify(Array.from(document.querySelectorAll('figure[data-plot]')).map(f => {
  const img = f.querySelector('img');
  return {name: f.dataset.plot, empty: f.dataset.empty === 'true',
          drawn: !!img && img.complete && img.naturalWidth > 0, width: img ? img.naturalWidth : 0};
}))"""


def check_page(path, screenshot=None, timeout: float = 60.0) -> PageCheck:
    """Load ``path`` in headless Chromium; return what it logged and requested; save a screenshot."""
    return asyncio.run(_check(Path(path).resolve(), Path(screenshot) if screenshot else None, timeout))


async def _check(path: Path, screenshot: Path | None, timeout: float) -> PageCheck:
    import aiohttp

    browser = chromium()
    if browser is None:
        raise RuntimeError("no Chromium on this machine")
    profile = tempfile.mkdtemp(prefix="reelops-chromium-")
    args = [browser, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1200,900", "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        endpoint = await asyncio.wait_for(_devtools_url(process), timeout)
        async with aiohttp.ClientSession() as session, session.ws_connect(endpoint, max_msg_size=0) as socket:
            cdp = _Protocol(socket)
            reader = asyncio.create_task(cdp.read())
            try:
                return await asyncio.wait_for(_load(cdp, path, screenshot), timeout)
            finally:
                reader.cancel()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


async def _devtools_url(process) -> str:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, process.stderr.readline)
        if not line:
            raise RuntimeError(f"Chromium ended before it listened (exit {process.poll()})")
        found = re.search(rb"DevTools listening on (ws://\S+)", line)
        if found:
            return found.group(1).decode()


class _Protocol:
    """Commands and events of the DevTools protocol over one browser WebSocket (flat sessions)."""

    def __init__(self, socket):
        self.socket, self.next_id = socket, 0
        self.answers: dict = {}
        self.events: asyncio.Queue = asyncio.Queue()

    async def read(self) -> None:
        async for message in self.socket:
            data = json.loads(message.data)
            if "id" in data:
                future = self.answers.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                await self.events.put(data)

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.answers[self.next_id] = future
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self.socket.send_str(json.dumps(message))
        answer = await future
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})


async def _load(cdp: _Protocol, path: Path, screenshot: Path | None) -> PageCheck:
    target = await cdp.send("Target.createTarget", {"url": "about:blank"})
    session = (await cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        await cdp.send(f"{domain}.enable", session=session)
    url = path.as_uri()
    result = PageCheck()
    await cdp.send("Page.navigate", {"url": url}, session=session)
    loaded = False
    while not loaded:
        event = await cdp.events.get()
        _note(event, url, result)
        loaded = event.get("method") == "Page.loadEventFired"
    # Whatever the page still does right after its load event (late scripts, lazy images).
    await asyncio.sleep(1.0)
    while not cdp.events.empty():
        _note(cdp.events.get_nowait(), url, result)
    figures = await cdp.send("Runtime.evaluate", {"expression": _FIGURES_JS, "returnByValue": True}, session=session)
    result.figures = json.loads(figures["result"]["value"])
    title = await cdp.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True}, session=session)
    result.title = title["result"]["value"]
    if screenshot is not None:
        metrics = await cdp.send("Page.getLayoutMetrics", session=session)
        height = int(metrics["cssContentSize"]["height"])
        await cdp.send("Emulation.setDeviceMetricsOverride",
                       {"width": 1200, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        shot = await cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                              session=session)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    return result


def _note(event: dict, url: str, result: PageCheck) -> None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        result.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
    elif method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        result.console_errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        result.console_errors.append(params["entry"].get("text", ""))
    elif method == "Network.requestWillBeSent":
        requested = params.get("request", {}).get("url", "")
        if requested != url and not requested.startswith("data:"):
            result.requests.append(requested)
