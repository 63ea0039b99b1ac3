"""Typed, strict configuration: frozen dataclasses, one per component. Defaults live here only.

``configs/default.yaml`` documents every key with these same defaults (a test pins that they
agree). Loading rejects unknown keys, wrong types and out-of-range values, naming the key path
(``outputs.osc.targets[1].port: expected 1..65535, got 70000``) and collecting every problem
before raising one ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from streamtag.errors import ConfigError


def _rng(lo: float | None = None, hi: float | None = None, default: Any = None, **kw: Any) -> Any:
    """A field with an allowed range (inclusive); ``lo``/``hi`` None means unbounded."""
    return field(default=default, metadata={"range": (lo, hi)}, **kw)


@dataclass(frozen=True)
class InputConfig:
    device: int | str | None = None  # index or case-insensitive name substring; None: default
    file: str | None = None  # play this audio file instead of a device
    realtime: bool = True  # pace a file in real time (False: as fast as possible)
    channels: list[int] | None = None  # 0-based channels mixed to mono; None: all
    sample_rate_hz: int | None = _rng(8000, 384000)  # device rate; None: device default
    blocksize: int = _rng(0, 8192, 256)  # PortAudio block [frames]; 0 lets PortAudio choose
    ring_s: float = _rng(0.5, 60.0, 4.0)  # capture ring buffer length [s]


@dataclass(frozen=True)
class StreamConfig:
    name: str = "main"
    channels: list[int] | None = None  # 0-based device channels mixed into this stream


@dataclass(frozen=True)
class ModelConfig:
    checkpoint: str | None = None  # path to a .safetensors checkpoint; None: the bundled model


@dataclass(frozen=True)
class AnalysisConfig:
    silence_db: float = _rng(-160.0, 0.0, -60.0)  # hops quieter than this are `silent` [dBFS]
    stream: str = "main"  # stream name in records when `streams` is empty


@dataclass(frozen=True)
class NoveltyConfig:
    """Novelty (with an embedding head): the last ``recent_s`` against the ``memory_s`` before,
    less what is usual lately (``baseline_s``).

    Compared are the hops' sound vectors (the CNN's summary of each 0.5 s hop's window, before
    the LSTM; streamtag.embedding), not their embeddings.
    """

    # Memory chosen on splice streams of training pieces (bundled model 2388435731b9, sound
    # vectors standardised by its sound scale; each half of the streams picks the threshold for
    # the other): changes of piece caught within 1 s with 2 s of memory 0.883 (1.03 false alarms
    # per minute), 3 s 0.872 (0.85), 4 s 0.900 (1.18), 5 s 0.897 (1.13), 6 s 0.889 (1.05). On
    # the validation pieces, 4 s: 0.893 at 0.89 false alarms per minute (2 s: 0.829 at 1.04).
    memory_s: float = _rng(1.0, 600.0, 4.0)  # the past the current sound is compared with [s]
    recent_s: float = _rng(0.5, 30.0, 0.5)  # the current sound: mean over this [s]
    # How far the music has been moving lately is taken off (the median of the novelty of the
    # last `baseline_s`): busy music does not raise alarms all the time, a still piece's change
    # stands out. On the training-piece splices (4 s memory, both halves calibrating in turn):
    # caught within 1 s 0.900 without, 0.922 with 3 s (0.914 with 5 s, 0.908 with 10 s), at
    # 0.88-1.18 false alarms per minute; on the validation pieces 0.893 → 0.906 with 3 s.
    baseline_s: float = _rng(0.0, 600.0, 3.0)  # [s]; 0: off (the plain distance)
    # A hop whose novelty is above this is a fresh start (streamtag.restarts): the LSTM state,
    # the pitch-class memory and novelty's own memory start again there, so music after room
    # noise or another piece is estimated as a fresh start on it is. None: off (only silent
    # hops restart).
    restart: float | None = _rng(0.0, 10.0, 0.2)


@dataclass(frozen=True)
class ReferenceConfig:
    """Matching against a reference library (``streamtag reference add``)."""

    library: str | None = None  # library file; None: no reference matching
    # 4 s: sequence matching of 4 s queries found the right piece after 5 s 62 % of the time on
    # the validation renders, 2 s queries 53 % (bundled model, 260 pieces).
    window_s: float = _rng(0.5, 30.0, 4.0)  # query: the hops of this much sound [s]
    known_distance: float | None = _rng(0.0, 2.0)  # threshold; None: the checkpoint's


#: OSC target port when a target states none [UDP port]: 9000, Wekinator's 6448 for its profile.
DEFAULT_OSC_PORT = 9000
WEKINATOR_PORT = 6448


@dataclass(frozen=True)
class TempoConfig:
    """Tempo and beat tracking on the frontend's onset strength (streamtag.tempo)."""

    enabled: bool = True  # record section `tempo`, /tempo each hop, /beat at each beat
    # Tempo range [BPM]. A tempo outside it is reported at its double or half inside it
    # (so max_bpm >= 2 × min_bpm).
    min_bpm: float = _rng(30.0, 300.0, 60.0)
    max_bpm: float = _rng(30.0, 300.0, 180.0)
    # Time constant [s] of the periodicity estimate: how long a tempo change takes to be
    # followed (and how much of the past speaks for the current tempo).
    memory_s: float = _rng(1.0, 60.0, 8.0)


@dataclass(frozen=True)
class OscTarget:
    """One OSC receiver and what it gets (``profile``; see streamtag.publish.wire.PROFILES)."""

    host: str = "127.0.0.1"
    port: int | None = _rng(1, 65535, None)  # None: 9000, or 6448 for profile wekinator
    profile: Literal["bundle", "plain", "touchdesigner", "wekinator"] = "bundle"
    name: str | None = None  # what mappings' `target` refers to
    inputs: list[str] = field(default_factory=list)  # wekinator: record paths, one float each
    stream: str | None = None  # wekinator: the stream that drives it; None: the first

    def __post_init__(self) -> None:
        if self.port is None:
            port = WEKINATOR_PORT if self.profile == "wekinator" else DEFAULT_OSC_PORT
            object.__setattr__(self, "port", port)


@dataclass(frozen=True)
class SmoothingConfig:
    kind: Literal["none", "exp", "hold"] = "none"
    time_s: float = _rng(0.0, 60.0, 1.0)  # exponential time constant [s]
    threshold: float = _rng(0.0, None, 0.02)  # hold: send only changes larger than this


@dataclass(frozen=True)
class MappingConfig:
    source: str = ""  # a record path: timbre.brightness, emotion.valence, level_db, …
    sources: list[str] = field(default_factory=list)  # or several: one message, one float each
    to: str = ""  # OSC address
    range: list[float] = field(default_factory=lambda: [0.0, 1.0])  # output range
    curve: Literal["lin", "exp", "log"] = "lin"
    in_range: list[float] | None = None  # input range; None: the source's nominal range
    stream: str | None = None  # only this stream drives it; None: every stream
    target: str | list[str] | None = None  # target name(s); None: every target but wekinator


@dataclass(frozen=True)
class FastLaneConfig:
    enabled: bool = True
    rate_hz: float = _rng(1.0, 200.0, 50.0)  # control rate of the fast lane [Hz]


@dataclass(frozen=True)
class OscConfig:
    enabled: bool = True
    prefix: str = "/streamtag"
    targets: list[OscTarget] = field(default_factory=lambda: [OscTarget()])
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    mappings: list[MappingConfig] = field(default_factory=list)
    fast: FastLaneConfig = field(default_factory=FastLaneConfig)
    # Largest UDP payload [bytes]; a bigger hop bundle goes as several with the same timetag.
    max_datagram_bytes: int = _rng(64, 65507, 1472)


@dataclass(frozen=True)
class ZmqConfig:
    enabled: bool = True
    endpoint: str = "tcp://127.0.0.1:5556"
    hwm: int = _rng(1, 1_000_000, 1000)  # messages queued per subscriber before dropping
    status_interval_s: float = _rng(0.1, 60.0, 1.0)


@dataclass(frozen=True)
class WebConfig:
    """The live view in the browser and its WebSocket feed (streamtag.publish.web)."""

    enabled: bool = True
    host: str = "127.0.0.1"  # bind address; 0.0.0.0 shows the page to the whole network
    port: int = _rng(0, 65535, 8090)  # 0: any free port (logged, and in the status)
    # A client (browser tab) that does not keep up loses messages beyond this many queued;
    # 256 is about 5 s of the 50 Hz fast lane.
    queue_messages: int = _rng(1, 100_000, 256)


@dataclass(frozen=True)
class OscQueryConfig:
    """The OSC address space as OSCQuery JSON over HTTP (streamtag.publish.oscquery)."""

    enabled: bool = True
    host: str = "127.0.0.1"  # bind address
    port: int = _rng(0, 65535, 8091)  # 0: any free port
    name: str = "streamtag"  # HOST_INFO NAME and zeroconf instance name
    zeroconf: bool = False  # advertise as _oscjson._tcp over mDNS (needs `pip install zeroconf`)


@dataclass(frozen=True)
class OutputsConfig:
    osc: OscConfig = field(default_factory=OscConfig)
    zmq: ZmqConfig = field(default_factory=ZmqConfig)
    web: WebConfig = field(default_factory=WebConfig)
    oscquery: OscQueryConfig = field(default_factory=OscQueryConfig)


@dataclass(frozen=True)
class ControlConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = _rng(1, 65535, 9001)
    # Senders (addresses or networks, e.g. 192.168.1.20 or 192.168.1.0/24) whose control
    # messages are obeyed besides loopback; empty: every sender that can reach the port.
    allow: list[str] = field(default_factory=list)
    # Control messages obeyed per second (every message of a bundle counts); the rest are
    # dropped and counted (`rate_limited`).
    max_messages_per_s: float = _rng(1.0, 10000.0, 50.0)


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["human", "json"] = "human"


@dataclass(frozen=True)
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    tempo: TempoConfig = field(default_factory=TempoConfig)
    streams: list[StreamConfig] = field(default_factory=list)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# -- strict loading -----------------------------------------------------------------------------

_MISSING = object()


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {type(None): "null", bool: "true/false", int: "an integer", float: "a number",
            str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


#: A number with an exponent, as people write it (``1e-9``, ``3E+2``, ``.5e1``).
_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters: a message names a value, it does not echo a file."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    """Check ``value`` against type ``tp``; return the converted value or _MISSING."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1:  # Optional[X]: X's own message is the precise one
            return _convert(non_null[0], value, path, problems)
        for arg in (a for a in args if a is not type(None)):
            sub: list[str] = []
            out = _convert(arg, value, path, sub)
            if not sub:
                return out
        problems.append(f"{path}: expected {_type_name(tp)}, got {_short(value)}")
        return _MISSING
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        problems.append(f"{path}: expected {_type_name(tp)}, got {_short(value)}")
        return _MISSING
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{path}: expected {_type_name(tp)}, got {_short(value)}")
            return _MISSING
        (item_tp,) = typing.get_args(tp)
        items = [_convert(item_tp, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return _MISSING if any(i is _MISSING for i in items) else items
    if dataclasses.is_dataclass(tp):
        return _from_mapping(tp, value, path, problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            # YAML 1.1 reads 1e-9 (no dot in the mantissa) as a string: a number was meant.
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                out = float(value)
            except OverflowError:  # an integer of hundreds of digits
                out = math.inf
            if math.isfinite(out):
                return out
            # NaN would pass every range check, ±inf is no setting
            problems.append(f"{path}: expected a finite number, got {_short(value)}")
            return _MISSING
    elif tp is str:
        if isinstance(value, str):
            return value
    problems.append(f"{path}: expected {_type_name(tp)}, got {_short(value)}")
    return _MISSING


def _from_mapping(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{path or '<top>'}: expected a mapping, got {_short(data)}")
        return _MISSING
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key) if len(str(key)) <= 80 else _short(str(key))
        key_path = f"{path}.{name}" if path else name
        if key not in fields:
            close = [k for k in fields if k.startswith(str(key)[:3])]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{key_path}: unknown key{hint}; known keys: {', '.join(fields)}")
            continue
        out = _convert(hints[key], value, key_path, problems)
        if out is _MISSING:
            continue
        lo, hi = fields[key].metadata.get("range", (None, None))
        if isinstance(out, (int, float)) and not isinstance(out, bool) and (
            (lo is not None and out < lo) or (hi is not None and out > hi)
        ):
            lo_s = "-inf" if lo is None else f"{lo:g}"
            hi_s = "inf" if hi is None else f"{hi:g}"
            problems.append(f"{key_path}: expected {lo_s}..{hi_s}, got {_short(out)}")
            continue
        kwargs[key] = out
    return cls(**kwargs)


def _check_semantics(cfg: Config, problems: list[str]) -> None:
    """Cross-field rules that types alone cannot say."""
    if not cfg.outputs.osc.prefix.startswith("/") or cfg.outputs.osc.prefix.endswith("/"):
        problems.append(
            f"outputs.osc.prefix: expected an OSC address like '/streamtag', "
            f"got {_short(cfg.outputs.osc.prefix)}"
        )
    for i, ch in enumerate(cfg.input.channels or []):
        if ch < 0:
            problems.append(f"input.channels[{i}]: expected >= 0, got {ch}")
    names = [s.name for s in cfg.streams]
    for i, s in enumerate(cfg.streams):
        if not s.name or not s.name.replace("_", "").replace("-", "").isalnum():
            problems.append(f"streams[{i}].name: expected letters, digits, - or _, "
                            f"got {_short(s.name)}")
        if names.count(s.name) > 1:
            problems.append(f"streams[{i}].name: {_short(s.name)} is used by more than one stream")
        for j, ch in enumerate(s.channels or []):
            if ch < 0:
                problems.append(f"streams[{i}].channels[{j}]: expected >= 0, got {ch}")
    stream_names = names or [cfg.analysis.stream]
    targets = cfg.outputs.osc.targets
    target_names = [t.name for t in targets if t.name is not None]
    for i, t in enumerate(targets):
        p = f"outputs.osc.targets[{i}]"
        if t.name is not None and target_names.count(t.name) > 1:
            problems.append(f"{p}.name: {t.name!r} is used by more than one target")
        if t.profile == "wekinator":
            if not t.inputs:
                problems.append(f"{p}.inputs: profile wekinator needs the record paths to send, "
                                "e.g. [timbre.brightness, emotion.valence]")
            for j, path in enumerate(t.inputs):
                if not path or path.startswith(".") or path.endswith("."):
                    problems.append(f"{p}.inputs[{j}]: expected a record path like "
                                    f"timbre.brightness, got {path!r}")
            if t.stream is not None and t.stream not in stream_names:
                problems.append(f"{p}.stream: expected one of {', '.join(stream_names)}, "
                                f"got {t.stream!r}")
        else:
            if t.inputs:
                problems.append(f"{p}.inputs: only profile wekinator sends inputs "
                                f"(this target's profile is {t.profile})")
            if t.stream is not None:
                problems.append(f"{p}.stream: only profile wekinator takes a stream "
                                f"(this target's profile is {t.profile})")
    for i, m in enumerate(cfg.outputs.osc.mappings):
        p = f"outputs.osc.mappings[{i}]"
        if bool(m.source) == bool(m.sources):
            problems.append(f"{p}.source: expected either source (one path, e.g. "
                            "timbre.brightness) or sources (a list of paths), not "
                            f"{'both' if m.source else 'neither'}")
        if m.in_range is not None and len(m.in_range) != 2:
            problems.append(f"{p}.in_range: expected [low, high], got {m.in_range!r}")
        if m.stream is not None and m.stream not in stream_names:
            problems.append(f"{p}.stream: expected one of {', '.join(stream_names)}, "
                            f"got {m.stream!r}")
        wanted = [m.target] if isinstance(m.target, str) else (m.target or [])
        if m.target is not None and not wanted:
            problems.append(f"{p}.target: expected a target name or a list of them, got []")
        for name in wanted:
            if name not in target_names:
                known = ", ".join(repr(n) for n in target_names) or "none (give targets a name)"
                problems.append(f"{p}.target: no OSC target is named {name!r}; named "
                                f"targets: {known}")
        if not m.to.startswith("/"):
            problems.append(f"{p}.to: expected an OSC address starting with '/', "
                            f"got {_short(m.to)}")
        if len(m.range) != 2:
            problems.append(f"{p}.range: expected [low, high], got {_short(m.range)}")
        elif m.curve in ("exp", "log") and min(m.range) <= 0:
            problems.append(f"{p}.range: curve {m.curve!r} needs both ends > 0, "
                            f"got {_short(m.range)}")
    if cfg.model.checkpoint is not None and not Path(cfg.model.checkpoint).expanduser().exists():
        problems.append(f"model.checkpoint: file not found: {cfg.model.checkpoint}")
    lib = cfg.reference.library
    if lib is not None and not Path(lib).expanduser().is_file():
        problems.append(f"reference.library: file not found: {lib} (create it with "
                        "`streamtag reference add NAME FILE… --library FILE`)")
    if cfg.tempo.min_bpm * 2.0 > cfg.tempo.max_bpm:
        problems.append(f"tempo.max_bpm: expected at least 2 × min_bpm ({cfg.tempo.min_bpm:g}) "
                        f"so that every tempo has a double or half in range, got "
                        f"{cfg.tempo.max_bpm:g}")
    for i, a in enumerate(cfg.control.allow):
        try:
            ipaddress.ip_network(a, strict=False)
        except ValueError:
            problems.append(f"control.allow[{i}]: expected an IP address or network like "
                            f"192.168.1.0/24, got {_short(a)}")
    if cfg.reference.known_distance is not None and cfg.reference.known_distance <= 0:
        problems.append(f"reference.known_distance: expected 0 < value <= 2, got "
                        f"{cfg.reference.known_distance}")


def parse_dataclass(cls: type, data: Any, path: str = "") -> Any:
    """Strictly build any config dataclass from parsed YAML (other modules' configs too).

    Raises ConfigError listing every unknown key, wrong type and out-of-range value by path.
    """
    problems: list[str] = []
    out = _from_mapping(cls, {} if data is None else data, path, problems)
    if problems:
        raise ConfigError(problems)
    return out


def config_from_dict(data: dict[str, Any] | None) -> Config:
    """Build a Config from parsed YAML; raise ConfigError listing every problem."""
    problems: list[str] = []
    cfg = _from_mapping(Config, {} if data is None else data, "", problems)
    if cfg is not _MISSING:
        _check_semantics(cfg, problems)
    if problems:
        raise ConfigError(problems)
    return cfg


#: Largest config file read [bytes]: a config is a page of settings, not a data set.
MAX_CONFIG_BYTES = 256_000
#: Deepest nesting of mappings and lists [levels] (the deepest real config key has 5).
MAX_CONFIG_DEPTH = 32
#: Most YAML nodes a config may stand for once its aliases are expanded: a tree this size takes
#: milliseconds to check, while a "billion laughs" file of a few hundred bytes stands for 10⁹.
MAX_CONFIG_NODES = 100_000


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with limits checked while the node graph is composed, before any
    Python object is built: nesting depth, and the node count with every alias expanded (an
    alias costs the expanded size of what it points to, counted from a memo, not by walking)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) → expanded size of its subtree [nodes]
        self._total = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            self._add(self._sizes.get(id(node), 1), node)
            return node
        self._depth += 1
        if self._depth > MAX_CONFIG_DEPTH:
            mark = self.peek_event().start_mark
            raise _LimitError(f"nested deeper than {MAX_CONFIG_DEPTH} levels (line "
                              f"{mark.line + 1})")
        before = self._total
        node = super().compose_node(parent, index)
        self._depth -= 1
        # The subtree's own nodes were counted as they were composed; this one is one more.
        self._sizes[id(node)] = self._total - before + 1
        self._add(1, node)
        return node

    def _add(self, n: int, node: Any) -> None:
        self._total += n
        if self._total > MAX_CONFIG_NODES:
            raise _LimitError(f"stands for more than {MAX_CONFIG_NODES:,} values once its "
                              f"aliases (*name) are expanded (line {node.start_mark.line + 1}); "
                              "refused as an alias bomb")


class _LimitError(Exception):
    """A config file exceeds one of the loader's limits."""


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file (safe loader, bounded: size, nesting, expanded aliases); ConfigError
    names the file and what is wrong. Never recurses without bound or grows memory with what
    the file claims to hold."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror or e})") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes; not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                          f"{e.start}); save it as UTF-8") from e
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _LimitError as e:
        raise ConfigError(f"{path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    except (ValueError, OverflowError, RecursionError, MemoryError) as e:
        # e.g. an integer of more digits than Python converts (ValueError)
        raise ConfigError(f"{path}: a value cannot be read: {e}") from e
    finally:
        loader.dispose()


def load_config(path: str | Path | None) -> Config:
    """Read a YAML config file (None: the defaults)."""
    return Config() if path is None else config_from_dict(read_yaml(path))
