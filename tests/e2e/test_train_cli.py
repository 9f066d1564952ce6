"""``segany train`` end to end: a config file in, a resumable run and weights out; under ``torchrun`` too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import segany
from support import TINY
from support import run_cli as run

CONFIG = """
out_dir = "run"
steps = {steps}
warmup_steps = 1
batch_size = 1
masks_per_image = 2
precision = "float32"
log_every = 1
save_every = 1
[simulation]
iterations = 2
[model_config]
decoder_mlp_dim = {mlp}
[model_config.encoder]
img_size = 256
embed_dim = 64
depth = 4
num_heads = 4
window_size = 7
global_attn_indexes = [1, 3]
[[data]]
spec = "synthetic:seed=1,count=10,size=96"
weight = 1
[[data]]
spec = "synthetic:seed=2,count=10,size=96"
copy_paste = {{ height = 128, width = 128, max_rotation = 30 }}
scale_jitter = {{ size = 128 }}
weight = 1
"""


def write_config(folder: Path, steps: int) -> Path:
    path = folder / "train.toml"
    path.write_text(CONFIG.format(steps=steps, mlp=TINY.decoder_mlp_dim))
    return path




def test_train_resume_and_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, steps=2)
    code, out, _ = run(["train", str(config), "--steps", "1"], capsys)
    assert code == 0, out
    run_dir = tmp_path / "run"
    assert (run_dir / "last.pt").exists() and (run_dir / "model.safetensors").exists()

    code, _, err = run(["train", str(config)], capsys)
    assert code == 1 and "--resume" in err and "Traceback" not in err
    code, out, err = run(["train", str(config), "--resume"], capsys)
    assert code == 0 and "Resuming at step 1 of 2" in err
    logged = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2]
    model = segany.build_sam(checkpoint=run_dir / "model.safetensors", device="cpu")
    # The architecture of the config file, carried in the weights' metadata.
    assert model.config == TINY
    assert model.img_size == 256


def test_a_fine_tuning_run_resumes_on_a_fresh_clone_from_its_progress_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's checkpoint and OUT_DIR live outside the repository; only the progress file is committed."""
    code, out, _ = run(["train", str(write_config(tmp_path, steps=1))], capsys)
    assert code == 0, out
    config = tmp_path / "finetune.toml"
    text = CONFIG.format(steps=3, mlp=TINY.decoder_mlp_dim).replace('out_dir = "run"', 'out_dir = "run_b"')
    config.write_text('checkpoint = "run/model.safetensors"\nprogress = "progress.safetensors"\n' + text)
    code, out, _ = run(["train", str(config), "--steps", "2"], capsys)
    assert code == 0, out
    shutil.rmtree(tmp_path / "run")
    shutil.rmtree(tmp_path / "run_b")  # a fresh clone: neither the checkpoint nor last.pt
    code, out, err = run(["train", str(config), "--resume"], capsys)
    assert code == 0 and "Resuming at step 2 of 3" in err, err
    model = segany.build_sam(checkpoint=tmp_path / "run_b" / "model.safetensors", device="cpu")
    assert model.config == TINY
    # Without the progress file the missing checkpoint is one sentence.
    (tmp_path / "progress.safetensors").unlink()
    shutil.rmtree(tmp_path / "run_b")
    code, _, err = run(["train", str(config), "--resume"], capsys)
    assert code == 1 and "Nothing to resume" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('out_dir = "x"\nmodel = "vit_b"\nlr = "fast"\n[[data]]\nspec = "synthetic"\n', "Invalid training config"),
        ('out_dir = "x"\nmodel = "vit_b"\nsteps = 0\n[[data]]\nspec = "synthetic"\n', "steps must be at least 1"),
        ('out_dir = "x"\nmodel = "vit_b"\n[[data]]\nspec = "nowhere/val"\n', "not found"),
        ('out_dir = "x"\nmodel = "vit_b"\nfreeze = ["encoder"]\n[[data]]\nspec = "synthetic"\n', "Cannot freeze"),
        (
            'out_dir = "x"\nmodel = "vit_b"\niou_loss_weight = -1\n[[data]]\nspec = "synthetic"\n',
            "iou_loss_weight must be 0 or more",
        ),
        (
            'out_dir = "x"\nmodel = "vit_b"\niou_rank_weight = -0.5\n[[data]]\nspec = "synthetic"\n',
            "iou_rank_weight must be 0 or more",
        ),
        ("out_dir = [\n", "not valid"),
    ],
)
def test_bad_configs_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    code, _, err = run(["train", str(path)], capsys)
    assert code == 1
    assert err.startswith("segany: error:") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not torch.distributed.is_available(), reason="no torchrun")
def test_the_same_command_under_torchrun_trains_with_two_processes(tmp_path: Path) -> None:
    config = write_config(tmp_path, steps=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "segany", "train", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("Training finished") == 1, "only the main process reports and saves"
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == 1
    assert state["train_config"]["batch_size"] == 1
