"""Dataset loaders: each reads a local copy as distributed and returns ``(clips, report)``.

``LOADERS`` maps a dataset kind to its loader class; ``load_dataset(kind, root)`` is the one call
the trainer needs. Every loader returns ``Clip`` objects with labels on streamtag's scales
(``scales`` holds every mapping) and a ``LoadReport`` naming what was missing or malformed.
"""

from __future__ import annotations

from pathlib import Path

from streamtag.errors import DatasetError
from streamtag.train.datasets.base import (
    SPLITS,
    TIMBRE_NAMES,
    Clip,
    DatasetLoader,
    LoadReport,
    Problem,
    assign_splits_by_group,
)
from streamtag.train.datasets.deam import DEAMLoader
from streamtag.train.datasets.freesound_oneshot import FreesoundOneShotLoader
from streamtag.train.datasets.generic import GenericLoader
from streamtag.train.datasets.medley import MedleyLoader
from streamtag.train.datasets.pmemo import PMEmoLoader

LOADERS: dict[str, type[DatasetLoader]] = {
    "medley": MedleyLoader,
    "pmemo": PMEmoLoader,
    "deam": DEAMLoader,
    "freesound_oneshot": FreesoundOneShotLoader,
    "generic": GenericLoader,
}


def load_dataset(kind: str, root: Path | str, **options: object) -> tuple[list[Clip], LoadReport]:
    """Load the dataset of ``kind`` under ``root``.

    ``options`` go to the loader class (e.g. ``check_audio=False``; ``csv_name`` for generic).
    Raises ``DatasetError`` for an unknown kind or an unusable dataset.
    """
    try:
        loader_class = LOADERS[kind]
    except KeyError:
        raise DatasetError(
            f"unknown dataset kind {kind!r} (known: {', '.join(LOADERS)})"
        ) from None
    try:
        loader = loader_class(**options)
    except TypeError as exc:
        raise DatasetError(f"bad option for dataset kind {kind!r}: {exc}") from exc
    return loader.load(Path(root))


__all__ = [
    "LOADERS",
    "SPLITS",
    "TIMBRE_NAMES",
    "Clip",
    "DEAMLoader",
    "DatasetLoader",
    "FreesoundOneShotLoader",
    "GenericLoader",
    "LoadReport",
    "MedleyLoader",
    "PMEmoLoader",
    "Problem",
    "assign_splits_by_group",
    "load_dataset",
]
