"""Write what torchaudio computes for the seed preset, so tests check our frontend against it
without torchaudio installed (tests/data/golden_torchaudio.npz; never edit it by hand).

Needs the ``torchaudio`` extra (torch and torchaudio 2.11.0, an exact pair), in its own venv:
    python3 -m venv /tmp/ta && /tmp/ta/bin/pip install -e '.[torchaudio]'
    /tmp/ta/bin/python scripts/make_torchaudio_golden.py

It imports nothing from streamtag: the golden values are torchaudio's alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden_torchaudio.npz"

#: (name, n_freqs, f_min [Hz], f_max [Hz], n_mels, sample rate [Hz]) of each preset's filterbank.
FILTERBANKS = (("seed", 128, 0.0, 22050.0, 128, 44100), ("default", 513, 30.0, 11025.0, 64, 22050))


def main() -> None:
    # Seed 000's transform over the causal framing (n_fft − hop zeros before the signal).
    x = (np.random.default_rng(6).standard_normal(44100) * 0.3).astype(np.float32)
    padded = np.concatenate([np.zeros(254 - 112, np.float32), x])
    spec = torchaudio.transforms.MelSpectrogram(
        sample_rate=44100, n_fft=254, win_length=224, hop_length=112, power=2,
        normalized=True, n_mels=128, center=False,
    )(torch.from_numpy(padded).reshape(1, -1))[0].T.numpy()
    arrays = {"seed_signal": x, "seed_mel": spec}
    for name, n_freqs, f_min, f_max, n_mels, rate in FILTERBANKS:
        fb = torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, rate,
                                                   norm=None, mel_scale="htk")
        arrays[f"{name}_fbank"] = fb.numpy()
    np.savez_compressed(OUT, **arrays, torch=np.array(torch.__version__),
                        torchaudio=np.array(torchaudio.__version__))
    print(f"wrote {OUT} (torch {torch.__version__}, torchaudio {torchaudio.__version__})")


if __name__ == "__main__":
    main()
