"""User mappings (Wekinator-style): any record value to any OSC address, scaled with a curve,
optionally smoothed.

A :class:`OscMapping` is a frozen spec, validated on construction; a :class:`Smoother` holds the
per-output state; a :class:`Mapper` pairs them, with one smoother per stream, mapping and value,
and turns each record into :class:`MappedMessage` s (address, values, target names) for
:meth:`streamtag.publish.osc.OscPublisher.send_values`.

Curves map the input, first clipped to ``in_range`` and normalised to x in [0, 1], onto
``range = (lo, hi)``:

- ``lin``: y = lo + x (hi − lo)
- ``exp``: y = lo (hi / lo)^x — equal input steps give equal output *ratios* (pitch, cutoff);
  the midpoint is the geometric mean √(lo·hi).
- ``log``: y = lo + (hi − lo) · ln(1 + x (hi/lo − 1)) / ln(hi/lo) — the inverse shape of
  ``exp``: rises fast, then flattens.

``exp`` and ``log`` need both range ends > 0. ``lo > hi`` is allowed and inverts the mapping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from streamtag.publish import wire

CURVES = ("lin", "exp", "log")


def _pair(value: Any, what: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: expected two numbers [lo, hi], got {value!r}") from e
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{what}: ends must be finite, got [{lo:g}, {hi:g}]")
    if lo == hi:
        raise ValueError(f"{what}: ends must differ, got [{lo:g}, {hi:g}]")
    return lo, hi


def resolve(record: Mapping[str, Any], source: str) -> Any:
    """The value at dotted ``source`` in ``record``, or None if absent.

    A key may itself hold dots or spaces (``instrument.probs.tenor sax``): at each level the
    whole remaining path is tried as a key before splitting further. A list is indexed by a
    number: ``embedding.xy.0`` is x, ``embedding.xy.1`` is y.
    """
    node: Any = record
    rest = source
    while rest:
        if isinstance(node, list):
            head, _, rest = rest.partition(".")
            if not head.isdigit() or int(head) >= len(node):
                return None
            node = node[int(head)]
            continue
        if not isinstance(node, Mapping):
            return None
        if rest in node:
            return node[rest]
        head, _, rest = rest.partition(".")
        if head not in node:
            return None
        node = node[head]
    return node


@dataclass(frozen=True)
class OscMapping:
    """Scale one or several record values to an OSC address, sent as one message.

    Args:
        source: dotted path into the record: ``timbre.brightness``, ``emotion.valence``,
            ``instrument.probs.violin``, ``instrument.confidence``, ``level_db``, ``silent``…;
            or several paths (``["embedding.xy.0", "embedding.xy.1"]``): one message with one
            float per path, in order (``/synth/xy ff``).
        to: OSC address to send to, e.g. ``/synth/cutoff``.
        range: output (lo, hi), in the receiver's unit (e.g. Hz); the same for every value.
        curve: ``lin``, ``exp`` or ``log`` (see the module docstring).
        in_range: input (lo, hi) that maps onto ``range``; values outside are clipped. Default:
            each source's nominal range from :func:`wire.value_range` (timbre 0…1, valence
            −1…1, level −160…0 dBFS); required for sources without one.
        stream: only records of this stream drive the output; None: every stream (each
            through its own smoother).
        target: names of the OSC targets the message goes to; None: every target but
            ``wekinator`` ones.

    Raises:
        ValueError: naming the field (``source``, ``to``, ``range``, ``curve``, ``in_range``,
            ``target``).
    """

    source: str | tuple[str, ...]
    to: str
    range: tuple[float, float]
    curve: str
    in_range: tuple[float, float] | None = None
    stream: str | None = None
    target: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        where = f"mapping {self.source!r} → {self.to!r}"
        sources = (self.source,) if isinstance(self.source, str) else self.source
        try:
            sources = tuple(sources)
        except TypeError:
            sources = ()
        if not sources or not all(isinstance(s, str) and s and not s.startswith(".")
                                  for s in sources):
            raise ValueError(f"{where}: source: expected a dotted record path like "
                             "'timbre.brightness', or a list of them")
        if not isinstance(self.source, str):
            object.__setattr__(self, "source", sources)
        try:
            wire.check_address(self.to)
        except (ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"{where}: to: {e}") from e
        if self.curve not in CURVES:
            raise ValueError(f"{where}: curve: expected one of {', '.join(CURVES)}, "
                             f"got {self.curve!r}")
        lo, hi = _pair(self.range, f"{where}: range")
        if self.curve != "lin" and (lo <= 0 or hi <= 0):
            raise ValueError(f"{where}: range: curve {self.curve} needs both ends > 0, "
                             f"got [{lo:g}, {hi:g}]")
        object.__setattr__(self, "range", (lo, hi))
        if self.in_range is None:
            defaults = [wire.value_range(s) for s in sources]
            for s, d in zip(sources, defaults, strict=True):
                if d is None:
                    raise ValueError(f"{where}: in_range: required, source {s!r} has no "
                                     "known range")
            if len(set(defaults)) == 1:  # one range for all: state it
                object.__setattr__(self, "in_range", defaults[0])
        else:
            object.__setattr__(self, "in_range", _pair(self.in_range, f"{where}: in_range"))
        if self.target is not None:
            names = (self.target,) if isinstance(self.target, str) else tuple(self.target)
            if not names or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"{where}: target: expected a target name or a list of them, "
                                 f"got {self.target!r}")
            object.__setattr__(self, "target", names)

    @property
    def sources(self) -> tuple[str, ...]:
        """The record paths, one per value of the message."""
        return (self.source,) if isinstance(self.source, str) else self.source

    @property
    def in_ranges(self) -> tuple[tuple[float, float], ...]:
        """The input range of each source."""
        if self.in_range is not None:
            return (self.in_range,) * len(self.sources)
        return tuple(wire.value_range(s) for s in self.sources)  # type: ignore[misc]

    def scale(self, value: float, index: int = 0) -> float:
        """Map one input value (of source ``index``) to the output range: clip to its input
        range, normalise, apply the curve. ``value`` must be finite."""
        ilo, ihi = self.in_range if self.in_range is not None else self.in_ranges[index]
        x = min(1.0, max(0.0, (value - ilo) / (ihi - ilo)))
        lo, hi = self.range
        if self.curve == "lin":
            y = lo + x * (hi - lo)
        elif self.curve == "exp":
            y = lo * (hi / lo) ** x
        else:
            r = hi / lo
            y = lo + (hi - lo) * math.log1p(x * (r - 1.0)) / math.log(r)
        # Pin the ends exactly: receivers compare against them (e.g. a gate at 0).
        if x == 0.0:
            return lo
        if x == 1.0:
            return hi
        return y

    def apply(self, record: Mapping[str, Any]) -> tuple[float, ...] | None:
        """The scaled values for this record, one per source, or None when the record is of
        another stream or a source is absent, not a number or non-finite (a message with a
        value missing would be misread)."""
        if self.stream is not None and record.get(wire.KEY_STREAM) != self.stream:
            return None
        out = []
        for i, source in enumerate(self.sources):
            value = resolve(record, source)
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            out.append(self.scale(float(value), i))
        return tuple(out)

    def manifest_entry(self) -> dict[str, Any]:
        """This mapping as a manifest address entry (see :func:`wire.build_manifest`)."""
        n = len(self.sources)
        return {
            "address": self.to,
            "types": "f" * n,
            "args": [{"name": "value" if n == 1 else f"value{i}", "type": "f", "unit": "",
                      "range": list(self.range)} for i in range(n)],
            "description": f"user mapping of {', '.join(self.sources)} ({self.curve})",
            "from": self.source if isinstance(self.source, str) else list(self.source),
            "in_range": [list(r) for r in self.in_ranges] if n > 1 else list(self.in_ranges[0]),
            "curve": self.curve,
            "stream": self.stream,
            "targets": None if self.target is None else list(self.target),
        }


@dataclass
class Smoother:
    """Per-output smoothing of mapped values, with state; build with :meth:`exponential` or
    :meth:`hold`.

    - exponential: one-pole low-pass, y += α (x − y) with α = 1 − exp(−hop_s / time_constant_s):
      after one time constant the output has covered 63 % of a step, whatever the hop length.
    - hold: the output keeps its value until the input moves by at least ``threshold`` (in
      output units) from it, then jumps there — stops a synth parameter jittering.

    The first value after construction or :meth:`reset` passes through unchanged.
    """

    kind: str
    alpha: float = 1.0
    threshold: float = 0.0
    _y: float | None = field(default=None, init=False, repr=False)

    @classmethod
    def exponential(cls, time_constant_s: float, hop_s: float) -> Smoother:
        """Exponential smoothing with ``time_constant_s`` [s] for updates every ``hop_s`` [s];
        a time constant of 0 disables smoothing."""
        if not (math.isfinite(time_constant_s) and time_constant_s >= 0):
            raise ValueError(f"time_constant_s: expected ≥ 0, got {time_constant_s!r}")
        if not (math.isfinite(hop_s) and hop_s > 0):
            raise ValueError(f"hop_s: expected > 0, got {hop_s!r}")
        alpha = 1.0 if time_constant_s == 0 else 1.0 - math.exp(-hop_s / time_constant_s)
        return cls("exponential", alpha=alpha)

    @classmethod
    def hold(cls, threshold: float) -> Smoother:
        """Hold until the input differs from the output by ≥ ``threshold`` (output units)."""
        if not (math.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"threshold: expected ≥ 0, got {threshold!r}")
        return cls("hold", threshold=threshold)

    def process(self, x: float) -> float:
        """Smooth one finite value; returns the output for this hop."""
        y = self._y
        if y is None:
            y = x
        elif self.kind == "exponential":
            y = y + self.alpha * (x - y)
        elif abs(x - y) >= self.threshold:
            y = x
        self._y = y
        return y

    def reset(self) -> None:
        """Forget the state: the next value passes through."""
        self._y = None


class MappedMessage(NamedTuple):
    """One message a mapping sends: its address, values and target names (None: default)."""

    address: str
    values: tuple[float, ...]
    targets: tuple[str, ...] | None = None


@dataclass
class Mapper:
    """The daemon's set of mappings with their smoothers.

    ``smoothers`` holds one prototype per mapping (None: unsmoothed); every stream that drives
    a mapping gets its own copies, one per value, made on the stream's first record: two
    streams driving the same address must not pull one smoother between them.
    """

    mappings: Sequence[OscMapping]
    smoothers: Sequence[Smoother | None] = ()
    _state: dict[tuple[Any, int], list[Smoother]] = field(default_factory=dict, init=False,
                                                           repr=False)

    def __post_init__(self) -> None:
        if self.smoothers and len(self.smoothers) != len(self.mappings):
            raise ValueError("smoothers: expected one (or None) per mapping")
        if not self.smoothers:
            self.smoothers = [None] * len(self.mappings)

    def _smoothers(self, stream: Any, i: int, proto: Smoother, n: int) -> list[Smoother]:
        key = (stream, i)
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = [replace(proto) for _ in range(n)]
            for s in state:
                s.reset()
        return state

    def process(self, record: Mapping[str, Any]) -> list[MappedMessage]:
        """The messages this record drives, smoothed per stream, in mapping order."""
        out: list[MappedMessage] = []
        stream = record.get(wire.KEY_STREAM)
        for i, (m, proto) in enumerate(zip(self.mappings, self.smoothers, strict=True)):
            values = m.apply(record)
            if values is None:
                continue
            if proto is not None:
                state = self._smoothers(stream, i, proto, len(values))
                values = tuple(s.process(v) for s, v in zip(state, values, strict=True))
            out.append(MappedMessage(m.to, values, m.target))
        return out

    def reset(self) -> None:
        """Reset every smoother (``/control/reset``)."""
        self._state.clear()
