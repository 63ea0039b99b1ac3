"""Regenerate the golden data under tests/data/ (never edit those files by hand).

Run: python scripts/make_test_data.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from streamtag.checkpoint import load_checkpoint
from streamtag.engine import Engine
from streamtag.frontend import DEFAULT_FRONTEND, MelFrontend
from streamtag.testing import make_checkpoint, make_signal

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    signal = make_signal(3.0, 22050)
    sf.write(DATA / "signal.wav", signal, 22050, subtype="FLOAT")
    frames = MelFrontend(DEFAULT_FRONTEND).process_offline(signal)
    np.save(DATA / "golden_mel.npy", frames.mel)
    ck_path = make_checkpoint(DATA / "tiny-default.safetensors", "default")
    make_checkpoint(DATA / "tiny-seed.safetensors", "seed")
    records = Engine(load_checkpoint(ck_path)).analyze(signal)
    with open(DATA / "golden_records.jsonl", "w") as f:
        for r in records:
            r.pop("wall"), r.pop("latency_ms")
            f.write(json.dumps(r) + "\n")
    print(f"wrote {sorted(p.name for p in DATA.iterdir())}")


if __name__ == "__main__":
    main()
