"""The annotation server against a hostile page or client: DNS rebinding, cross-site forms, oversized or
out-of-range input, framing; each refused with one sentence and a 4xx, nothing stored."""

from __future__ import annotations

import numpy as np
import pytest
from test_api import H, W, _detail, _ellipse_mask, _ids

from segany.formats import rle as rle_utils


def test_foreign_host_names_are_refused(make_client) -> None:
    client = make_client(allowed_hosts=["annotate.lan"])
    refused = client.get("/api/images", headers={"Host": "attacker.example"})
    assert refused.status_code == 400 and "attacker.example" in _detail(refused)
    image_id = _ids(client)["a.png"]
    assert (
        client.get(f"/api/images/{image_id}/file", headers={"Host": "attacker.example:8000"}).status_code
        == 400
    )
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "192.168.1.20", "annotate.lan:8000"):
        assert client.get("/api/images", headers={"Host": host}).status_code == 200, host


def test_cross_site_forms_cannot_change_anything(make_client) -> None:
    client = make_client()
    image_id = _ids(client)["a.png"]
    rle = rle_utils.uncompressed(_ellipse_mask())
    created = client.post(f"/api/images/{image_id}/annotations", json={"mask": rle}).json()["id"]
    del client.headers["X-Requested-With"]  # now as a browser form on another site sends them
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for method, path in (
        ("POST", f"/api/images/{image_id}/prefill"),
        ("POST", f"/api/images/{image_id}/embed"),
        ("DELETE", f"/api/annotations/{created}"),
        ("POST", "/api/export"),
    ):
        response = client.request(method, path, headers=form, content=b"x=1")
        assert response.status_code == 415, (method, path)
        assert "Content-Type: application/json" in _detail(response)
    assert [a["id"] for a in client.get(f"/api/images/{image_id}/annotations").json()["annotations"]] == [
        created
    ]
    # The app's own page sends a JSON content type, with or without a body.
    json_type = {"Content-Type": "application/json"}
    assert client.post(f"/api/images/{image_id}/embed", headers=json_type).status_code == 200
    assert client.delete(f"/api/annotations/{created}", headers=json_type).status_code == 204


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"points": [[5, 5]] * 201, "labels": [1] * 201}, "at most 200"),
        ({"points": [[W, 5]], "labels": [1]}, f"lies outside the image ({W} x {H} pixels)"),
        ({"points": [[5, -1]], "labels": [1]}, "lies outside the image"),
        ({"box": [0, 0, W + 10, H]}, f"reaches outside the image ({W} x {H} pixels)"),
    ],
)
def test_prompts_are_capped_and_inside_the_image(make_client, body, message) -> None:
    client = make_client()
    response = client.post(f"/api/images/{_ids(client)['a.png']}/predict", json=body)
    assert response.status_code == 422
    assert message in _detail(response)


def test_huge_ids_are_unknown(make_client) -> None:
    client = make_client()
    huge = 99999999999999999999999
    rle = rle_utils.uncompressed(_ellipse_mask())
    for method, path, body in (
        ("GET", f"/api/images/{huge}/file", None),
        ("POST", f"/api/images/{huge}/embed", None),
        ("POST", f"/api/images/{huge}/predict", {"points": [[1, 1]], "labels": [1]}),
        ("GET", f"/api/images/{huge}/annotations", None),
        ("POST", f"/api/images/{huge}/annotations", {"mask": rle}),
        ("POST", f"/api/images/{huge}/prefill", None),
        ("PATCH", f"/api/annotations/{huge}", {"label": "x"}),
        ("DELETE", f"/api/annotations/{huge}", None),
        ("POST", "/api/queue", {"image_ids": [huge]}),
    ):
        response = client.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert str(huge) in _detail(response)


def test_stored_prompts_are_capped(make_client) -> None:
    client = make_client()
    image_id = _ids(client)["a.png"]
    rle = rle_utils.uncompressed(_ellipse_mask())
    response = client.post(
        f"/api/images/{image_id}/annotations", json={"mask": rle, "prompts": "x" * 100_000}
    )
    assert response.status_code == 422 and "prompts" in _detail(response)
    assert client.get(f"/api/images/{image_id}/annotations").json()["annotations"] == []
    kept = {"points": [[10, 20]], "labels": [1]}
    assert (
        client.post(f"/api/images/{image_id}/annotations", json={"mask": rle, "prompts": kept}).status_code
        == 201
    )


def test_pages_cannot_be_framed_and_the_api_is_described(make_client) -> None:
    client = make_client()
    for path in ("/", "/api/images", "/api/images/999/file", "/docs"):
        response = client.get(path)
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "swagger" in client.get("/docs").text.lower()
    schema = client.get("/openapi.json").json()
    assert "/api/images/{image_id}/predict" in schema["paths"]


def test_a_decompression_bomb_is_skipped(make_client, images_dir, monkeypatch, caplog) -> None:
    from PIL import Image

    big = np.zeros((300, 400, 3), np.uint8)
    Image.fromarray(big).save(images_dir / "bomb.png")
    # Pillow refuses images over twice MAX_IMAGE_PIXELS as bombs; lower the bar so this one is.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 400 // 3)
    client = make_client()
    names = [i["name"] for i in client.get("/api/images").json()["images"]]
    assert "bomb.png" not in names and "a.png" in names
    assert client.get("/api/images", params={"rescan": "true"}).status_code == 200
    assert any("bomb.png" in r.getMessage() and "too large" in r.getMessage() for r in caplog.records)


def test_the_server_decides_how_many_candidates_an_unmarked_prompt_gets(make_client) -> None:
    client = make_client()
    image_id = _ids(client)["a.png"]
    click = client.post(f"/api/images/{image_id}/predict", json={"points": [[50, 40]], "labels": [1]}).json()
    boxed = client.post(f"/api/images/{image_id}/predict", json={"box": [20, 20, 120, 90]}).json()
    two = client.post(f"/api/images/{image_id}/predict", json={"points": [[50, 40], [90, 60]], "labels": [1, 1]})
    assert len(click["masks"]) == 3  # one click is ambiguous (segany.prompts.is_ambiguous)
    assert len(boxed["masks"]) == 1 and len(two.json()["masks"]) == 1
