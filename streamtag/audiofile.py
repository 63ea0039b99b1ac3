"""Reading audio files (WAV, FLAC, OGG, MP3, and anything libsndfile reads) for analysis.

libsndfile (through soundfile) decodes all four formats; files it cannot open fall back to
librosa's decoder (audioread/ffmpeg) before we give up with a message naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from streamtag.errors import AudioError


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode ``path`` → (samples [n, channels] float32 in [-1, 1], sample rate [Hz])."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as sf_err:
        try:
            import librosa

            with warnings.catch_warnings():  # its "trying audioread" chatter is not for users
                warnings.simplefilter("ignore")
                mono_or_multi, rate = librosa.load(str(path), sr=None, mono=False)
            data = np.atleast_2d(mono_or_multi).T.astype(np.float32)
        except Exception as e:  # any decoder failure means "cannot read"
            raise AudioError(
                f"{path}: cannot read audio ({sf_err}; fallback decoder: {type(e).__name__})"
            ) from e
    if data.shape[0] == 0:
        raise AudioError(f"{path}: holds no audio samples")
    if not np.isfinite(data).all():
        # Decoders can return NaN/Inf for corrupt frames; the frontend would zero them anyway,
        # but the user should know the file is damaged.
        raise AudioError(f"{path}: contains non-finite samples (corrupt file?)")
    return data, int(rate)
