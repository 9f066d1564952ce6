"""Copy a trained run's weights into the package as the bundled default model (float16, config inside).

    python scripts/bundle_default_model.py runs/default_model/model.safetensors

Float16 halves the file (the package ships at most 25 MB); `build_sam` loads it back into float32.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from segany import build_sam, save_checkpoint
from segany.variants import BUNDLED_WEIGHTS

MAX_BYTES = 25 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="a run's model.safetensors (or last.pt)")
    args = parser.parse_args()
    model = build_sam(checkpoint=args.weights, device="cpu")
    BUNDLED_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(copy.deepcopy(model).half(), BUNDLED_WEIGHTS, config=model.config)
    size = BUNDLED_WEIGHTS.stat().st_size
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {BUNDLED_WEIGHTS} ({size / 1e6:.2f} MB, {params / 1e6:.2f} M parameters)")
    if size > MAX_BYTES:
        raise SystemExit(f"{BUNDLED_WEIGHTS} is {size} bytes, over the {MAX_BYTES}-byte budget.")


if __name__ == "__main__":
    main()
