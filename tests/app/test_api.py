"""The annotation API through FastAPI's TestClient: every route, and every refusal (as one-sentence JSON)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from segany.formats import read_coco, read_png_folder, read_sa1b, read_yolo
from segany.formats import rle as rle_utils

H, W = 120, 160


def _ellipse_mask() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return ((xx - 70) / 30.0) ** 2 + ((yy - 50) / 20.0) ** 2 <= 1


def _detail(response) -> str:
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    assert body["detail"].endswith("."), body
    return body["detail"]


def _ids(client) -> dict[str, int]:
    return {image["name"]: image["id"] for image in client.get("/api/images").json()["images"]}


# --- images ----------------------------------------------------------------------------------------


def test_list_images(make_client) -> None:
    client = make_client()
    body = client.get("/api/images").json()
    assert body["total"] == 3 and body["annotated"] == 0
    # The text file and the symlink leading outside the folder are not images of the app.
    assert [(i["name"], i["width"], i["height"]) for i in body["images"]] == [
        ("a.png", W, H),
        ("b.png", W, H),
        ("sub/c.png", W, H),
    ]
    assert all(i["accepted"] == i["proposed"] == 0 and not i["embedded"] for i in body["images"])


def test_rescan_finds_new_images(make_client, images_dir: Path) -> None:
    client = make_client()
    (images_dir / "d.png").write_bytes((images_dir / "a.png").read_bytes())
    assert client.get("/api/images").json()["total"] == 3
    assert client.get("/api/images", params={"rescan": "true"}).json()["total"] == 4


def test_image_file(make_client, images_dir: Path, tmp_path: Path) -> None:
    client = make_client()
    ids = _ids(client)
    response = client.get(f"/api/images/{ids['sub/c.png']}/file")
    assert response.status_code == 200
    assert response.content == (images_dir / "sub" / "c.png").read_bytes()
    assert response.headers["content-type"] == "image/png"

    assert client.get("/api/images/999/file").status_code == 404
    assert "No image with id 999" in _detail(client.get("/api/images/999/file"))
    # A registered image replaced by a symlink leading outside the folder is refused.
    (images_dir / "b.png").unlink()
    (images_dir / "b.png").symlink_to(tmp_path / "secret.png")
    response = client.get(f"/api/images/{ids['b.png']}/file")
    assert response.status_code == 403 and "outside the images folder" in _detail(response)
    # A registered image whose file is gone.
    (images_dir / "a.png").unlink()
    response = client.get(f"/api/images/{ids['a.png']}/file")
    assert response.status_code == 404 and "no longer" in _detail(response)


def test_embed_is_cached_on_disk(make_client, tmp_path: Path) -> None:
    client = make_client()
    a = _ids(client)["a.png"]
    first = client.post(f"/api/images/{a}/embed").json()
    assert first["cached"] is False and first["seconds"] >= 0
    assert client.post(f"/api/images/{a}/embed").json()["cached"] is True
    assert [i["embedded"] for i in client.get("/api/images").json()["images"]] == [True, False, False]
    cache_files = list((tmp_path / "db" / ".segany-cache").glob(f"{a}-*.pt"))
    assert len(cache_files) == 1
    # A new server over the same database finds the embedding on disk.
    assert make_client().post(f"/api/images/{a}/embed").json()["cached"] is True
    assert client.post("/api/images/999/embed").status_code == 404


def test_replaced_image_is_embedded_again(make_client, images_dir: Path) -> None:
    client = make_client()
    a = _ids(client)["a.png"]
    client.post(f"/api/images/{a}/embed")
    (images_dir / "a.png").write_bytes((images_dir / "b.png").read_bytes())
    assert client.post(f"/api/images/{a}/embed").json()["cached"] is False


# --- predictions -----------------------------------------------------------------------------------


def test_predict_and_refine(make_client) -> None:
    client = make_client()
    a = _ids(client)["a.png"]
    first = client.post(f"/api/images/{a}/predict", json={"points": [[70, 50]], "labels": [1]})
    assert first.status_code == 200
    body = first.json()
    assert len(body["masks"]) == len(body["scores"]) == 3
    for mask in body["masks"]:
        assert mask["size"] == [H, W] and isinstance(mask["counts"], list)
        assert sum(mask["counts"]) == H * W
        assert rle_utils.decode(mask).shape == (H, W)

    refined = client.post(
        f"/api/images/{a}/predict",
        json={
            "points": [[70, 50], [10, 10]],
            "labels": [1, 0],
            "previous": {"prediction_id": body["prediction_id"], "index": 2},
            "multimask": False,
        },
    ).json()
    assert len(refined["masks"]) == 1 and refined["prediction_id"] != body["prediction_id"]

    boxed = client.post(f"/api/images/{a}/predict", json={"box": [40, 30, 100, 70], "multimask": False})
    assert boxed.status_code == 200 and len(boxed.json()["masks"]) == 1

    other = _ids(client)["b.png"]
    wrong_image = client.post(
        f"/api/images/{other}/predict",
        json={
            "points": [[5, 5]],
            "labels": [1],
            "previous": {"prediction_id": body["prediction_id"], "index": 0},
        },
    )
    assert wrong_image.status_code == 422 and "made on image" in _detail(wrong_image)
    bad_index = client.post(
        f"/api/images/{a}/predict",
        json={
            "points": [[5, 5]],
            "labels": [1],
            "previous": {"prediction_id": body["prediction_id"], "index": 3},
        },
    )
    assert bad_index.status_code == 422 and "below 3" in _detail(bad_index)
    forgotten = client.post(
        f"/api/images/{a}/predict",
        json={"points": [[5, 5]], "labels": [1], "previous": {"prediction_id": "nope", "index": 0}},
    )
    assert forgotten.status_code == 404 and "no longer kept" in _detail(forgotten)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "at least one point or a box"),
        ({"points": [[1, 2]], "labels": [1, 0]}, "one label per point"),
        ({"points": [[1, 2]], "labels": [2]}, "'labels[0]'"),
        ({"points": [[1, "x"]], "labels": [1]}, "'points[0][1]'"),
        ({"points": [[1, 2, 3]], "labels": [1]}, "'points[0]'"),
        ({"box": [10, 10, 5, 20]}, "x0 <= x1"),
        ({"box": [1, 2, 3]}, "'box'"),
        ({"points": [[1, 2]], "labels": [1], "pionts": []}, "'pionts'"),
        ({"points": [[1, 2]], "labels": [1], "previous": {"index": 0}}, "'previous.prediction_id'"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_predict_refusals(make_client, body, message: str) -> None:
    client = make_client()
    response = client.post("/api/images/1/predict", json=body)
    assert response.status_code == 422
    assert message in _detail(response)


def test_predict_unknown_image(make_client) -> None:
    response = make_client().post("/api/images/77/predict", json={"points": [[1, 2]], "labels": [1]})
    assert response.status_code == 404


# --- annotations -----------------------------------------------------------------------------------


def test_annotation_crud(make_client) -> None:
    client = make_client()
    a = _ids(client)["a.png"]
    mask = _ellipse_mask()
    created = client.post(
        f"/api/images/{a}/annotations",
        json={
            "mask": rle_utils.uncompressed(mask),
            "label": " cat ",
            "prompts": {"points": [[70, 50]], "labels": [1]},
            "seconds": 4.5,
            "annotator": "ann",
            "status": "accepted",
        },
    )
    assert created.status_code == 201
    ann_id = created.json()["id"]
    compressed = client.post(
        f"/api/images/{a}/annotations", json={"mask": rle_utils.encode(mask[::-1].copy())[0], "label": "dog"}
    )
    assert compressed.status_code == 201

    listed = client.get(f"/api/images/{a}/annotations").json()["annotations"]
    assert [x["id"] for x in listed] == [ann_id, compressed.json()["id"]]
    first = listed[0]
    assert np.array_equal(rle_utils.decode(first["mask"]), mask)
    assert isinstance(first["mask"]["counts"], list)
    assert (first["label"], first["status"], first["source"], first["annotator"]) == (
        "cat",
        "accepted",
        "manual",
        "ann",
    )
    assert first["area"] == int(mask.sum()) and first["seconds"] == 4.5
    ys, xs = np.nonzero(mask)
    assert first["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert first["prompts"] == {"points": [[70, 50]], "labels": [1]}
    assert first["created"]

    summary = client.get("/api/images").json()
    assert summary["annotated"] == 1 and summary["images"][0]["accepted"] == 2

    patched = client.patch(f"/api/annotations/{ann_id}", json={"label": "lion", "status": "rejected"}).json()
    assert (patched["label"], patched["status"]) == ("lion", "rejected")
    small = np.zeros((H, W), bool)
    small[10:20, 30:35] = True
    patched = client.patch(f"/api/annotations/{ann_id}", json={"mask": rle_utils.uncompressed(small)}).json()
    assert patched["area"] == 50 and patched["bbox"] == [30, 10, 5, 10] and patched["label"] == "lion"
    assert client.patch(f"/api/annotations/{ann_id}", json={}).json()["label"] == "lion"

    assert client.delete(f"/api/annotations/{ann_id}").status_code == 204
    assert client.delete(f"/api/annotations/{ann_id}").status_code == 404
    assert client.patch(f"/api/annotations/{ann_id}", json={"label": "x"}).status_code == 404
    assert [x["label"] for x in client.get(f"/api/images/{a}/annotations").json()["annotations"]] == ["dog"]
    assert client.get("/api/images/999/annotations").status_code == 404


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ({"size": [W, H], "counts": [0, H * W]}, "does not match the image size"),
        ({"size": [H, W], "counts": [H * W]}, "empty"),
        ({"size": [H, W], "counts": [5, 5]}, "cover 10 pixels"),
        ({"size": [H, W], "counts": "\u00ff"}, "invalid character"),
        ({"size": [H, 0], "counts": []}, "'mask.size[1]'"),
        ({"size": [H, W]}, "'mask.counts'"),
    ],
)
def test_annotation_mask_refusals(make_client, mask: dict, message: str) -> None:
    client = make_client()
    response = client.post("/api/images/1/annotations", json={"mask": mask})
    assert response.status_code == 422
    assert message in _detail(response)
    created = client.post("/api/images/1/annotations", json={"mask": rle_utils.uncompressed(_ellipse_mask())})
    patch = client.patch(f"/api/annotations/{created.json()['id']}", json={"mask": mask})
    assert patch.status_code == 422 and message in _detail(patch)


def test_annotation_field_refusals(make_client) -> None:
    client = make_client()
    mask = rle_utils.uncompressed(_ellipse_mask())
    for body, message in [
        ({"mask": mask, "status": "done"}, "'status'"),
        ({"mask": mask, "seconds": -1}, "'seconds'"),
        ({"mask": mask, "label": "x" * 201}, "'label'"),
        ({"label": "x"}, "'mask'"),
    ]:
        response = client.post("/api/images/1/annotations", json=body)
        assert response.status_code == 422 and message in _detail(response)
    response = client.patch("/api/annotations/1", json={"source": "import"})
    assert response.status_code == 422 and "'source'" in _detail(response)


def test_labels_most_used_first(make_client) -> None:
    client = make_client()
    mask = rle_utils.uncompressed(_ellipse_mask())
    for label in ("tree", "car", "car", "bike", "car", "tree"):
        client.post("/api/images/1/annotations", json={"mask": mask, "label": label})
    assert client.get("/api/labels").json() == {"labels": ["car", "tree", "bike"]}


# --- pre-fill and the background queue -----------------------------------------------------------------


def test_prefill_stores_proposals(make_client) -> None:
    client = make_client()
    a = _ids(client)["a.png"]
    response = client.post(f"/api/images/{a}/prefill", json={"points_per_side": 4})
    assert response.status_code == 200
    proposals = response.json()["annotations"]
    assert proposals and all(p["status"] == "proposed" and p["source"] == "prefill" for p in proposals)
    assert all(rle_utils.decode(p["mask"]).sum() == p["area"] > 0 for p in proposals)
    # A second pre-fill replaces the first one's unreviewed proposals, keeping accepted ones.
    client.patch(f"/api/annotations/{proposals[0]['id']}", json={"status": "accepted"})
    again = client.post(f"/api/images/{a}/prefill", json={"points_per_side": 4}).json()["annotations"]
    stored = client.get(f"/api/images/{a}/annotations").json()["annotations"]
    assert {x["id"] for x in stored} == {proposals[0]["id"]} | {x["id"] for x in again}
    image = client.get("/api/images").json()["images"][0]
    assert (image["accepted"], image["proposed"]) == (1, len(again))
    bad = client.post(f"/api/images/{a}/prefill", json={"points_per_side": 0})
    assert bad.status_code == 422 and "'points_per_side'" in _detail(bad)
    assert client.post("/api/images/999/prefill").status_code == 404


def test_queue_embeds_and_prefills_in_background(make_client, images_dir: Path) -> None:
    client = make_client()
    ids = _ids(client)
    assert client.get("/api/queue").json() == {"pending": 0, "done": 0, "current": None, "errors": []}
    (images_dir / "sub" / "c.png").unlink()  # its job fails, and says why
    queued = client.post("/api/queue", json={"image_ids": [ids["a.png"], ids["sub/c.png"]]})
    assert queued.status_code == 200 and queued.json()["pending"] + queued.json()["done"] <= 2
    client.post("/api/queue", json={"image_ids": [ids["b.png"]], "prefill": True})
    assert client.app.state.segany.queue.wait_idle(120)
    status = client.get("/api/queue").json()
    assert (status["pending"], status["done"], status["current"]) == (0, 3, None)
    assert [e["image_id"] for e in status["errors"]] == [ids["sub/c.png"]]
    assert "no longer in the images folder" in status["errors"][0]["detail"]
    images = {i["name"]: i for i in client.get("/api/images").json()["images"]}
    assert images["a.png"]["embedded"] and images["b.png"]["embedded"] and not images["sub/c.png"]["embedded"]
    assert images["b.png"]["proposed"] > 0 and images["a.png"]["proposed"] == 0

    unknown = client.post("/api/queue", json={"image_ids": [ids["a.png"], 999]})
    assert unknown.status_code == 404 and "999" in _detail(unknown)


# --- export --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["sa1b", "coco", "png", "yolo"])
def test_export_zip_reads_back(make_client, tmp_path: Path, format: str) -> None:
    client = make_client()
    ids = _ids(client)
    mask = _ellipse_mask()
    client.post(
        f"/api/images/{ids['sub/c.png']}/annotations",
        json={"mask": rle_utils.uncompressed(mask), "label": "egg"},
    )
    client.post(
        f"/api/images/{ids['a.png']}/annotations",
        json={"mask": rle_utils.uncompressed(mask), "status": "proposed"},
    )
    response = client.post("/api/export", json={"format": format})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    out = tmp_path / "export"
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(out)
    if format in ("png", "yolo"):  # formats without labels get them beside the files
        assert json.loads((out / "labels.json").read_text()) == {"sub/c.png": ["egg"]}
    else:
        assert not (out / "labels.json").exists()
    if format == "sa1b":
        info, anns = read_sa1b(out / "sub" / "c.json")
        assert info["file_name"] == "sub/c.png" and len(anns) == 1
        assert np.array_equal(rle_utils.decode(anns[0]["segmentation"]), mask)
        assert anns[0]["label"] == "egg"
        assert not (out / "a.json").exists()  # only accepted annotations are exported
        # SA-1B-pure: every JSON file in the folder is one image's SA-1B file.
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == ["sub/c.json"]
    elif format == "coco":
        ((info, anns),) = read_coco(out / "instances.json")
        assert info["file_name"] == "sub/c.png"
        assert np.array_equal(rle_utils.decode(anns[0]["segmentation"]), mask)
        categories = json.loads((out / "instances.json").read_text())["categories"]
        assert categories == [{"id": anns[0]["category_id"], "name": "egg"}]
        assert not any(
            part.startswith(".") for path in out.rglob("*") for part in path.relative_to(out).parts
        )
    elif format == "png":
        (record,) = read_png_folder(out / "sub" / "c")
        assert np.array_equal(record["segmentation"], mask)
        assert mask[int(record["point_coords"][0][1]), int(record["point_coords"][0][0])]
    else:
        (read,) = read_yolo(out / "sub" / "c.txt", H, W)
        assert (read & mask).sum() / (read | mask).sum() > 0.9


def test_export_refusals(make_client) -> None:
    client = make_client()
    response = client.post("/api/export", json={"format": "tiff"})
    assert response.status_code == 422 and "'format'" in _detail(response)
    empty = client.post("/api/export", json={"format": "png"})
    assert json.loads(zipfile.ZipFile(io.BytesIO(empty.content)).read("labels.json")) == {}


# --- guards: malformed requests, size limit, token -------------------------------------------------------


def test_malformed_requests(make_client) -> None:
    client = make_client()
    bad_json = client.post(
        "/api/images/1/predict", content=b'{"points": [[1, 2]', headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and "not valid JSON" in _detail(bad_json)
    missing = client.post("/api/images/1/predict", headers={"content-type": "application/json"})
    assert missing.status_code == 422 and "missing" in _detail(missing)
    not_json = client.post("/api/images/1/predict", content=b"points=1")
    assert not_json.status_code == 422 and "Content-Type: application/json" in _detail(not_json)
    bad_id = client.get("/api/images/abc/annotations")
    assert bad_id.status_code == 422 and "'image_id'" in _detail(bad_id)
    nowhere = client.get("/api/nothing")
    assert nowhere.status_code == 404 and _detail(nowhere)
    wrong_method = client.delete("/api/images")
    assert wrong_method.status_code == 405 and _detail(wrong_method)


def test_body_size_limit(make_client) -> None:
    client = make_client(max_body_bytes=1000)
    big = {"mask": {"size": [H, W], "counts": [1] * 2000}}
    response = client.post("/api/images/1/annotations", json=big)
    assert response.status_code == 413 and "1,000 bytes" in _detail(response)

    def chunks():  # no Content-Length: the limit is applied while reading
        for _ in range(100):
            yield b" " * 100

    streamed = client.post(
        "/api/images/1/annotations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    small = client.post("/api/images/1/predict", json={"points": [[1, 2]], "labels": [1]})
    assert small.status_code == 200


def test_token_required_everywhere(make_client) -> None:
    client = make_client(token="s3cret")
    for path in ("/api/images", "/", "/static/app.js", "/api/images/1/file"):
        response = client.get(path)
        assert response.status_code == 401 and "access token" in _detail(response), path
    wrong = client.get("/api/images", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "Wrong access token" in _detail(wrong)
    assert client.get("/api/images", params={"token": "nope"}).status_code == 401
    assert client.post("/api/images/1/predict", json={"points": [[1, 2]], "labels": [1]}).status_code == 401
    assert client.get("/api/images", headers={"Authorization": "Bearer s3cret"}).status_code == 200

    # ?token= works and leaves a cookie, with which the page's own files load.
    page = client.get("/", params={"token": "s3cret"})
    assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
    assert client.get("/api/images").status_code == 200
    client.cookies.clear()
    assert client.get("/api/images").status_code == 401


def test_ui_served_or_explained(make_client, tmp_path: Path) -> None:
    static = tmp_path / "ui"
    static.mkdir()
    (static / "index.html").write_text("<html>the ui</html>")
    (static / "app.js").write_text("console.log(1)")
    client = make_client(static_dir=static)
    assert client.get("/").text == "<html>the ui</html>"
    assert client.get("/static/app.js").text == "console.log(1)"
    assert client.get("/static/nothing.js").status_code == 404
    bare = make_client(static_dir=tmp_path / "missing")
    response = bare.get("/")
    assert response.status_code == 200 and "not installed" in response.text


def test_internal_errors_are_one_sentence(make_client, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    app = make_client().app
    monkeypatch.setattr(app.state.segany.storage, "labels", lambda: 1 / 0)
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    response = client.get("/api/labels")
    assert response.status_code == 500 and "ZeroDivisionError" in _detail(response)
