"""Fixtures of the annotation app's tests: a small images folder, the fixture model, an app factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segany.training.synthetic import make_scene

H, W = 120, 160
IMAGE_NAMES = ("a.png", "b.png", "sub/c.png")


@pytest.fixture(scope="session")
def model():
    from support import fixture_model

    return fixture_model()


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    """Three 160 x 120 synthetic scenes (one in a subfolder), a text file, and a symlink leading outside."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name in IMAGE_NAMES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_scene(rng, H, W).image).save(root / name)
    (root / "notes.txt").write_text("not an image")
    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(outside)
    (root / "escape.png").symlink_to(outside)
    return root


@pytest.fixture
def make_client(images_dir: Path, tmp_path: Path, model) -> Callable[..., object]:
    """``make_client(**create_app_options)`` -> a started TestClient over ``images_dir`` (closed afterwards)."""
    from fastapi.testclient import TestClient

    from segany.app.server import create_app

    clients = []

    def make(**options):
        options.setdefault("db_path", tmp_path / "db" / "annotations.sqlite")
        app = create_app(images_dir, model_factory=lambda: model, **options)
        # As the app's page does (see static/api.js), the client marks its requests as its own.
        client = TestClient(app, base_url="http://127.0.0.1", headers={"X-Requested-With": "segany-tests"})
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
