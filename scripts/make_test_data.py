"""Regenerate the golden data under tests/data/ (never edit those files by hand).

Run: python scripts/make_test_data.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from streamtag.checkpoint import load_checkpoint
from streamtag.config import NoveltyConfig, ReferenceConfig
from streamtag.engine import Engine
from streamtag.frontend import DEFAULT_FRONTEND, MelFrontend
from streamtag.model import EMOTION_HEAD
from streamtag.testing import (
    EMBEDDING_HEAD,
    TAGS_HEAD,
    TINY_KNOWN_DISTANCE,
    TINY_MATCH_DIMS,
    make_checkpoint,
    make_signal,
)

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"

#: Novelty windows of the golden embedding records (fixed here, as the config defaults may move).
GOLDEN_NOVELTY = NoveltyConfig(memory_s=30.0, recent_s=1.0, baseline_s=0.0, restart=None)


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    signal = make_signal(3.0, 22050)
    sf.write(DATA / "signal.wav", signal, 22050, subtype="FLOAT")
    frames = MelFrontend(DEFAULT_FRONTEND).process_offline(signal)
    np.save(DATA / "golden_mel.npy", frames.features)
    ck_path = make_checkpoint(DATA / "tiny-default.safetensors", "default")
    make_checkpoint(DATA / "tiny-seed.safetensors", "seed")
    records = Engine(load_checkpoint(ck_path)).analyze(signal)
    write_records(DATA / "golden_records.jsonl", records)
    # Tags, embedding (projection fitted, threshold set), novelty and a reference library made
    # of two other signals; the records of `signal` against it.
    emb_path = make_checkpoint(DATA / "tiny-embedding.safetensors",
                               heads=[EMOTION_HEAD, TAGS_HEAD, EMBEDDING_HEAD], projection=True,
                               known_distance=TINY_KNOWN_DISTANCE,
                               match_dims=TINY_MATCH_DIMS)
    ck = load_checkpoint(emb_path)
    lib = Engine(ck).new_library()
    for name, seed in (("one", 1), ("two", 2)):
        lib.add(name, [Engine(ck).reference_vectors(make_signal(3.0, 22050, seed=seed))],
                [f"{name}.wav"])
    lib.save(DATA / "tiny-embedding-references.safetensors")
    records = Engine(ck, novelty=GOLDEN_NOVELTY, reference=ReferenceConfig(window_s=1.0),
                     library=lib).analyze(signal)
    write_records(DATA / "golden_records_embedding.jsonl", records)
    print(f"wrote {sorted(p.name for p in DATA.iterdir())}")


def write_records(path: Path, records: list[dict]) -> None:
    with open(path, "w") as f:
        for r in records:
            r.pop("wall"), r.pop("latency_ms")
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
