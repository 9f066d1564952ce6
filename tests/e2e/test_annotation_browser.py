"""The annotation app end to end in a real browser: Debian's Chromium, headless, driven by Playwright.

The real server (``create_app`` with the trained fixture model, behind an access token) runs in a
thread on a free local port over a folder of synthetic scenes. The test opens an image, clicks an
object, waits for the predicted mask on the canvas, labels and accepts it, exports SA-1B through the
UI's download and checks the exported mask holds the clicked pixel and the label reached the database.
Screenshots of every step go to ``out/screenshots/annotation_browser/`` (git-ignored).

Needs ``/usr/bin/chromium`` (Debian's package; Playwright's own browser download is never used), the
``playwright`` Python package and the ``segany[app]`` extra; skipped with the reason when one is missing.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from segany.formats import rle as rle_utils
from segany.training.synthetic import make_scene

CHROMIUM = Path("/usr/bin/chromium")
# The machines that run this have no network: these flags keep Chromium from waiting on it.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "e2e-secret"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots" / "annotation_browser"
IMAGE_HEIGHT, IMAGE_WIDTH = 240, 320
LABEL = "widget"


def _missing_requirement() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing; install Debian's chromium (apt-get install chromium)."
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing; pip install 'segany[test]'."
    try:
        import uvicorn  # noqa: F401

        import segany.app.server  # noqa: F401
    except ImportError as exc:
        return f"the annotation server cannot be imported ({exc}); pip install 'segany[app]'."
    return None


class _Server:
    """uvicorn serving ``app`` in a daemon thread on a socket bound to a free 127.0.0.1 port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The annotation server did not start within 20 s.")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


@pytest.fixture
def scene_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Three synthetic scenes as PNGs; returns the folder and each file's instance masks."""
    folder = tmp_path / "images"
    folder.mkdir()
    masks = {}
    for seed in range(3):
        scene = make_scene(np.random.default_rng(100 + seed), IMAGE_HEIGHT, IMAGE_WIDTH)
        name = f"scene_{seed}.png"
        Image.fromarray(scene.image).save(folder / name)
        masks[name] = scene.masks
    return folder, masks


@pytest.fixture
def server(scene_folder: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> Iterator[_Server]:
    reason = _missing_requirement()
    if reason:
        pytest.skip(reason)
    from segany.app.server import create_app
    from support import fixture_model

    app = create_app(scene_folder[0], tmp_path / "annotations.db", fixture_model, token=TOKEN)
    with _Server(app) as running:
        yield running


def _wait_until(page: Any, predicate: str, arg: Any = None, timeout_s: float = 20.0) -> None:
    """Poll a JS predicate with ``page.evaluate``. (Playwright's ``wait_for_function`` evaluates its
    predicate with ``eval`` inside the page, which the app's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(predicate, arg):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.05)


def _deepest_pixel(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the mask pixel farthest from its edge: an unambiguous click on the object."""
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def test_click_accept_and_export_in_chromium(
    server: _Server, scene_folder: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = "scene_0.png"
    objects = scene_folder[1][name]
    target = objects[int(np.argmax(objects.sum(axis=(1, 2))))]  # the largest object
    x, y = _deepest_pixel(target)
    image_id = next(i["id"] for i in server.get("/api/images")["images"] if i["name"] == name)
    shots: list[Path] = []
    console_errors: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 860}, accept_downloads=True)
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

            def shot(step: str) -> None:
                path = SCREENSHOTS / f"{len(shots) + 1:02d}-{step}.png"
                page.screenshot(path=str(path))
                shots.append(path)

            page.goto(f"{server.url}/?token={TOKEN}")
            page.wait_for_selector(f"[data-image-id='{image_id}']")
            shot("image-list")

            # Open the image: the canvas takes clicks once the embedding is computed.
            page.click(f"[data-image-id='{image_id}']")
            page.wait_for_selector("#stage[data-state='ready']")
            shot("embedded")

            # Click the object's deepest pixel (the centre of that pixel on screen).
            box = page.locator("#canvas").bounding_box()
            assert box is not None
            page.mouse.click(
                box["x"] + (x + 0.5) * box["width"] / IMAGE_WIDTH,
                box["y"] + (y + 0.5) * box["height"] / IMAGE_HEIGHT,
            )
            _wait_until(page, "() => Number(document.querySelector('#canvas').dataset.maskPixels) > 0")
            # The overlay is drawn: the canvas pixel under the click is no longer the image's pixel.
            original = np.asarray(Image.open(scene_folder[0] / name).convert("RGB"))[y, x]
            _wait_until(
                page,
                """([x, y, rgb]) => {
                    const d = document.querySelector('#canvas').getContext('2d').getImageData(x, y, 1, 1).data;
                    return Math.abs(d[0] - rgb[0]) + Math.abs(d[1] - rgb[1]) + Math.abs(d[2] - rgb[2]) > 30;
                }""",
                arg=[x, y, [int(v) for v in original]],
            )
            assert page.locator("#candidates button").count() == 3  # one click: three candidates
            shot("mask")

            page.fill("#label-input", LABEL)
            page.click("#accept-btn")
            page.wait_for_selector("#annotation-list li[data-status='accepted']")
            assert page.get_attribute("#canvas", "data-mask-pixels") == "0"  # ready for the next mask
            shot("accepted")

            page.select_option("#export-format", "sa1b")
            with page.expect_download() as download_info:
                page.click("#export-btn")
            archive = tmp_path / "export.zip"
            download_info.value.save_as(archive)
            shot("exported")

            # The UI's RLE codec agrees with segany's on a mask with runs crossing columns.
            pattern = np.random.default_rng(0).random((7, 5)) > 0.5
            from_js = page.evaluate(
                """async ([mask, h, w]) => {
                    const rle = await import('/static/rle.js');
                    const encoded = rle.encode(Uint8Array.from(mask), h, w);
                    return {encoded, decoded: Array.from(rle.decode(encoded))};
                }""",
                [pattern.astype(int).ravel().tolist(), 7, 5],
            )
        finally:
            browser.close()

    assert from_js["encoded"] == rle_utils.uncompressed(pattern)
    assert from_js["decoded"] == pattern.astype(int).ravel().tolist()

    # The export: SA-1B JSON of the image (nothing else), whose one mask holds the clicked pixel and label.
    with zipfile.ZipFile(archive) as zf:
        documents = [json.loads(zf.read(n)) for n in zf.namelist() if n.endswith(".json")]
    (document,) = [d for d in documents if isinstance(d.get("image"), dict) and d["image"]["file_name"] == name]
    (exported,) = document["annotations"]
    mask = rle_utils.decode(exported["segmentation"])
    assert mask.shape == (IMAGE_HEIGHT, IMAGE_WIDTH)
    assert mask[y, x], "the exported mask does not contain the clicked pixel"
    iou = (mask & target).sum() / (mask | target).sum()
    assert exported["label"] == LABEL

    # The database, through the API: label, status, prompt and the timer's seconds.
    (stored,) = server.get(f"/api/images/{image_id}/annotations")["annotations"]
    assert (stored["label"], stored["status"], stored["source"]) == (LABEL, "accepted", "manual")
    assert stored["prompts"]["points"] == [[x, y]] and stored["prompts"]["labels"] == [1]
    assert stored["seconds"] > 0
    assert LABEL in server.get("/api/labels")["labels"]
    assert not console_errors, console_errors

    print(f"\nclicked ({x}, {y}); mask of {int(mask.sum())} px, IoU {iou:.2f} with the object")
    print(f"end to end in {time.monotonic() - started:.1f} s; screenshots:")
    for path in shots:
        print(f"  {path}")
