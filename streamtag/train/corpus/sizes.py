"""Corpus size presets (``streamtag corpus build --size``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CorpusSize:
    """A size preset.

    Attributes:
        n_per_class: training clips per class (8 instrument classes, 4 emotion quadrants,
            1 drum class).
        val_per_class: validation clips per class.
        renders_per_piece: training SoundFonts / kits each training piece is rendered through.
        val_renders_per_piece: renders of each validation piece (same notes and window, each
            with its own room, noise, EQ and gain): what piece retrieval is evaluated on.
        shared_window: the training renders of a piece share its notes, pitch shift and window
            (and differ in SoundFont and augmentation), so an embedding's positives are the
            same music through another instrument set; False (default: what the shipped model
            was trained on) gives each render its own shift and window, more views of a piece.
            Measured on the default size (20 epochs, with triplet ``parts: 2``): True left piece
            retrieval as it was and cost 4 points of instrument accuracy.
        workers: worker processes.
    """

    n_per_class: int
    val_per_class: int
    renders_per_piece: int = 2
    val_renders_per_piece: int = 2
    shared_window: bool = False
    workers: int = 2

    @property
    def clips(self) -> int:
        """Clips in the corpus when every set is installed."""
        return 13 * (self.n_per_class + self.val_per_class)


SIZE_PRESETS: dict[str, CorpusSize] = {
    "tiny": CorpusSize(n_per_class=1, val_per_class=1, renders_per_piece=1,
                       val_renders_per_piece=1, workers=1),
    "small": CorpusSize(n_per_class=80, val_per_class=16),
    "default": CorpusSize(n_per_class=320, val_per_class=40),
    "full": CorpusSize(n_per_class=800, val_per_class=160),
}
"""``tiny`` for tests (26 clips, seconds), ``small`` (1,248 clips, 2.1 h of audio, ~2 CPU-min),
``default`` (4,680 clips, 7.8 h: the corpus the shipped model was trained on, ~8 min here),
``full`` (12,480 clips, 20.8 h, ~21 CPU-min: about 11 min on 2 idle cores; 3.2 GB as PCM16)."""
