"""Many annotators at once, a real server process, and a process killed in the middle of saving."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from segany.app.mask_checks import bbox_xywh
from segany.formats import rle as rle_utils
from segany.store.storage import Storage

H, W = 120, 160
THREADS, SAVES = 8, 10
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "amg_fixture.safetensors"


def _mask(thread: int, i: int) -> np.ndarray:
    """A rectangle unique to (thread, i), so every saved mask can be checked."""
    mask = np.zeros((H, W), bool)
    mask[thread * 10 : thread * 10 + 10 + i, i * 10 : i * 10 + 5 + thread] = True
    return mask


def _save_from_threads(post) -> list[BaseException]:
    """Run ``post(thread, i, body)`` for every save from THREADS threads at once; return their errors."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(thread: int) -> None:
        try:
            start.wait()
            for i in range(SAVES):
                body = {
                    "mask": rle_utils.uncompressed(_mask(thread, i)),
                    "label": f"t{thread}-{i}",
                    "annotator": f"annotator{thread}",
                    "seconds": 1.0,
                }
                post(thread, i, body)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def _check_all_saved(annotations: list[dict]) -> None:
    assert len(annotations) == THREADS * SAVES
    by_label = {a["label"]: a for a in annotations}
    assert len(by_label) == THREADS * SAVES
    for thread in range(THREADS):
        for i in range(SAVES):
            saved = by_label[f"t{thread}-{i}"]
            assert np.array_equal(rle_utils.decode(saved["mask"]), _mask(thread, i))
            assert saved["area"] == int(_mask(thread, i).sum())


def test_concurrent_saves_through_separate_clients(make_client) -> None:
    first = make_client()
    clients = [first] + [make_client() for _ in range(THREADS - 1)]  # each its own server instance too

    def post(thread: int, i: int, body: dict) -> None:
        response = clients[thread].post("/api/images/1/annotations", json=body)
        assert response.status_code == 201, response.text

    assert _save_from_threads(post) == []
    _check_all_saved(first.get("/api/images/1/annotations").json()["annotations"])
    sessions = first.app.state.segany.storage.sessions()
    assert sorted(s["annotator"] for s in sessions) == [f"annotator{t}" for t in range(THREADS)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not FIXTURE.exists(), reason="the fixture model is missing")
def test_real_server_from_the_cli(images_dir: Path, tmp_path: Path) -> None:
    import httpx

    port, token = _free_port(), "tok"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "segany",
        "annotate",
        str(images_dir),
        "--db",
        str(tmp_path / "a.sqlite"),
    ]
    command += ["--port", str(port), "--token", token, "--checkpoint", str(FIXTURE), "--device", "cpu"]
    server = subprocess.Popen(
        command,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/images", headers=headers, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        assert httpx.get(f"{base}/api/images", timeout=5).status_code == 401
        predicted = httpx.post(
            f"{base}/api/images/1/predict",
            json={"points": [[80, 60]], "labels": [1]},
            headers=headers,
            timeout=60,
        )
        assert predicted.status_code == 200 and len(predicted.json()["masks"]) == 3

        clients = [httpx.Client(base_url=base, headers=headers, timeout=60) for _ in range(THREADS)]

        def post(thread: int, i: int, body: dict) -> None:
            response = clients[thread].post("/api/images/2/annotations", json=body)
            assert response.status_code == 201, response.text

        assert _save_from_threads(post) == []
        listed = httpx.get(f"{base}/api/images/2/annotations", headers=headers, timeout=30).json()
        _check_all_saved(listed["annotations"])
        for client in clients:
            client.close()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, stderr = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _, stderr = server.communicate()
    assert "open http://127.0.0.1" in stderr and "?token=tok" in stderr


_SAVER = """
import sys
import numpy as np
from segany.app.mask_checks import bbox_xywh
from segany.store.storage import NewAnnotation, Storage
from segany.formats import rle

storage = Storage(sys.argv[1])
(image_id,) = [s.image.id for s in storage.image_summaries()]
rng = np.random.default_rng(0)
batch = 0
while True:
    annotations = []
    for k in range(5):
        # Noisy masks make long RLE strings, so each transaction takes a while to write.
        mask = rng.random((600, 800)) < 0.5
        encoded = rle.encode(mask)[0]
        annotations.append(NewAnnotation(mask=encoded, area=rle.area(encoded), bbox=bbox_xywh(encoded),
                                         label=f"b{batch}-{k}", prompts={"batch": batch, "k": k},
                                         annotator="robot", seconds=1.0))
    storage.add_annotations(image_id, annotations)
    batch += 1
    print(batch, flush=True)
"""


def test_kill_mid_save_leaves_whole_annotations(tmp_path: Path) -> None:
    db_path = tmp_path / "kill.sqlite"
    Storage(db_path).add_images([("big.png", 800, 600)])
    script = tmp_path / "saver.py"
    script.write_text(textwrap.dedent(_SAVER))
    saver = subprocess.Popen(
        [sys.executable, str(script), str(db_path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        text=True,
    )
    try:
        for _ in range(4):  # let a few batches commit, then kill at an arbitrary point of the next
            line = saver.stdout.readline()
            assert line, "the saving process stopped early"
        time.sleep(0.05)
    finally:
        saver.send_signal(signal.SIGKILL)
        saver.wait(30)

    storage = Storage(db_path)  # opens cleanly (SQLite rolls back the interrupted transaction)
    with storage.reading() as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    (image,) = [s.image for s in storage.image_summaries()]
    rows = storage.annotations(image.id)
    assert len(rows) >= 4 * 5
    assert len(rows) % 5 == 0  # a batch is one transaction: all of it or none of it
    batches = {}
    for row in rows:
        mask = rle_utils.decode(row.mask)
        assert mask.shape == (600, 800)
        assert row.area == int(mask.sum()) and row.bbox == bbox_xywh(row.mask)
        assert row.label == f"b{row.prompts['batch']}-{row.prompts['k']}"
        assert (row.annotator, row.seconds, row.source, row.status) == ("robot", 1.0, "manual", "accepted")
        assert row.created and row.updated
        batches.setdefault(row.prompts["batch"], set()).add(row.prompts["k"])
    assert all(ks == set(range(5)) for ks in batches.values())
    assert sorted(batches) == list(range(len(batches)))
