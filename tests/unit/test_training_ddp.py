"""Data-parallel training on CPU: two gloo processes average their gradients and match one process that
sees the same global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from segany.training.interactive import SimulationConfig
from segany.training.synthetic import Scene, SyntheticScenes
from segany.training.train_config import DataSource, TrainConfig
from segany.training.trainer import Trainer
from support import TINY

MASKS_PER_IMAGE = 2


class Scenes:
    def __init__(self) -> None:
        self.scenes = SyntheticScenes(11, 128, 128)

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> Scene:
        return self.scenes[index]


def _config(out_dir: Path, batch_size: int) -> TrainConfig:
    # Boxes without noise and a single round: the prompts are the same however the images are split
    # across processes, so the two runs compute the same gradient. Only boxes: the multimask tokens get
    # no gradient, which DDP must tolerate.
    return TrainConfig(
        data=(DataSource("in-memory"),),
        out_dir=str(out_dir),
        model=None,
        model_config=TINY,
        batch_size=batch_size,
        masks_per_image=MASKS_PER_IMAGE,
        simulation=SimulationConfig(iterations=1, box_probability=1.0, box_noise_fraction=0.0),
        precision="float32",
        seed=3,
    )


def _gradients(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {
        name: param.grad.detach().clone()
        for name, param in trainer.model.named_parameters()
        if param.grad is not None
    }


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    torch.manual_seed(0)
    trainer = Trainer(_config(Path(out_dir), batch_size=1), data=Scenes())
    try:
        figures = trainer.accumulate_gradients(0)
        torch.save(
            {"grads": _gradients(trainer), "masks": figures["masks"]}, Path(out_dir) / f"rank{rank}.pt"
        )
    finally:
        trainer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_cpu_processes_average_gradients_like_one_process_with_the_global_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    single = Trainer(_config(tmp_path / "single", batch_size=2), data=Scenes())
    single.accumulate_gradients(0)
    expected = _gradients(single)
    # Each image must keep the same number of masks, so a mean of per-process means is the global mean.
    assert single.batches.get(0, 0).num_masks == 2 * MASKS_PER_IMAGE

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["masks"] for r in ranks] == [float(MASKS_PER_IMAGE)] * 2
    grads = [r["grads"] for r in ranks]
    assert grads[0].keys() == grads[1].keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(grads[0][name], grads[1][name]), f"{name}: the processes disagree"
        torch.testing.assert_close(grads[0][name], value, rtol=1e-4, atol=1e-7, msg=name)
    # Each process alone saw a different image, so averaging really happened.
    one_image = Trainer(_config(tmp_path / "one", batch_size=1), data=Scenes())
    one_image.accumulate_gradients(0)
    alone = _gradients(one_image)
    assert any(not torch.allclose(alone[n], grads[0][n], rtol=1e-3) for n in alone)
