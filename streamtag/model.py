"""The one model class: a CNN over each window of mel frames, an LSTM stepped once per hop, heads.

State is explicit (EnCodec's way): ``step(window, state) -> (outputs, state)``; the caller owns the
``LstmState`` and passes ``None`` for a fresh start. ``forward_sequence`` runs the CNN over all
windows of a sequence in one batch and the LSTM over the sequence; it equals stepping hop by hop
(the cornerstone test pins this).

Presets:
- ``seed``: seed 000's ``AudioLSTMCNN2`` layer for layer (128×196 input, c=64, LSTM 256,
  fc 256→128→64→32→16, no activations between the fc layers, as published; dropout is inactive
  at inference). Its last layer ``fc10`` becomes the heads: with one 2-output head the parameter
  count is the seed's 1,640,658.
- ``default``: four conv/BN/ReLU/pool blocks on a 64-mel × 50-frame (1 s) window, an LSTM of 128,
  one shared 128-unit layer, linear heads. About a tenth of the seed's work per hop.

``StreamTagModel.for_inference()`` is the same model arranged to run, not to train: each batch
norm folded into the convolution before it, the heads' layers in one matrix product, the pitch
templates' rotations computed once. Its outputs equal the model's to float rounding (~1e-6);
the engine runs it, so the daemon, ``analyze`` and evaluation run the same arithmetic.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from streamtag.record import HEAD_KINDS, TIMBRE_NAMES

HeadKind = Literal["regression", "multiclass", "multilabel", "embedding"]

#: Medley-solos-DB's 8 classes, in its instrument_id order.
INSTRUMENT_CLASSES: tuple[str, ...] = (
    "clarinet", "distorted electric guitar", "female singer", "flute", "piano",
    "tenor saxophone", "trumpet", "violin",
)


@dataclass(frozen=True)
class HeadSpec:
    """One output head.

    kind: regression (``labels`` name each output; ``range`` [lo, hi] bounds them),
    multiclass (softmax over ``labels``), multilabel (independent sigmoids), embedding
    (L2-normalised vector of ``len(labels)`` dims; labels may be ``d0..dN``).
    activation: ``range`` squashes regression outputs into ``range`` with a sigmoid;
    ``identity`` leaves them raw (the seed) and post-processing clips them.
    """

    name: str
    kind: HeadKind
    labels: tuple[str, ...]
    range: tuple[float, float] | None = None
    activation: Literal["range", "identity"] = "range"

    @property
    def size(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["range"] = list(self.range) if self.range is not None else None
        return d

    @staticmethod
    def from_dict(d: dict) -> HeadSpec:
        rng = d.get("range")
        return HeadSpec(
            name=d["name"], kind=d["kind"], labels=tuple(d["labels"]),
            range=(float(rng[0]), float(rng[1])) if rng is not None else None,
            activation=d.get("activation", "range"),
        )


EMOTION_HEAD = HeadSpec("emotion", "regression", ("valence", "arousal"), (-1.0, 1.0))
INSTRUMENT_HEAD = HeadSpec("instrument", "multiclass", INSTRUMENT_CLASSES)
TIMBRE_HEAD = HeadSpec("timbre", "regression", TIMBRE_NAMES, (0.0, 1.0))


@dataclass(frozen=True)
class ArchConfig:
    """Architecture of the model (stored in every checkpoint).

    n_mels: mel bands of the input. window_frames: frames the CNN sees per hop (context + hop).
    hop_frames: new frames per hop. n_chroma: pitch-class rows after the mel bands (0 or 12;
    see ``PitchClassEncoder``). The other fields size the layers of the preset.
    """

    preset: Literal["seed", "default"] = "default"
    n_mels: int = 64
    window_frames: int = 50
    hop_frames: int = 25
    channels: tuple[int, ...] = (16, 32, 64, 128)
    lstm_hidden: int = 128
    neck: tuple[int, ...] = (128,)
    dropout: float = 0.2
    n_chroma: int = 0

    @property
    def n_features(self) -> int:
        """Rows of an input frame: the mel bands, then the pitch-class rows."""
        return self.n_mels + self.n_chroma

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"], d["neck"] = list(self.channels), list(self.neck)
        return d

    @staticmethod
    def from_dict(d: dict) -> ArchConfig:
        d = dict(d)
        d["channels"], d["neck"] = tuple(d["channels"]), tuple(d["neck"])
        return ArchConfig(**d)


SEED_ARCH = ArchConfig(
    preset="seed", n_mels=128, window_frames=196, hop_frames=196, channels=(64,),
    lstm_hidden=256, neck=(128, 64, 32, 16), dropout=0.5,
)
DEFAULT_ARCH = ArchConfig(n_chroma=12)
ARCH_PRESETS: dict[str, ArchConfig] = {"seed": SEED_ARCH, "default": DEFAULT_ARCH}


@dataclass
class LstmState:
    """Recurrent state carried between hops. h, c: [1, B, H]."""

    h: torch.Tensor
    c: torch.Tensor

    def detach(self) -> LstmState:
        return LstmState(self.h.detach(), self.c.detach())

    def select(self, index: torch.Tensor | list[int]) -> LstmState:
        """The state of some batch rows (e.g. streams), shape [1, len(index), H]."""
        return LstmState(self.h[:, index], self.c[:, index])


def _seed_trunk(c: int, p_drop: float = 0.25) -> nn.Sequential:
    """AudioLSTMCNN2's convolutional part, with its layer names, [B,1,128,196] → [B,4c,1,1]."""
    def conv(i: int, o: int) -> nn.Conv2d:
        return nn.Conv2d(i, o, kernel_size=3, stride=1, padding=1)

    return nn.Sequential(
        OrderedDict(
            conv11=conv(1, c), relu11=nn.ReLU(), conv12=conv(c, c), relu12=nn.ReLU(),
            maxpool1=nn.MaxPool2d(2, 2),
            conv21=conv(c, c), relu21=nn.ReLU(), conv22=conv(c, c), relu22=nn.ReLU(),
            maxpool2=nn.MaxPool2d(2, 2),
            conv3=conv(c, 2 * c), relu3=nn.ReLU(), maxpool3=nn.MaxPool2d(3, 3),
            dropout3=nn.Dropout(p_drop),
            conv4=conv(2 * c, 4 * c), relu4=nn.ReLU(), maxpool4=nn.MaxPool2d(3, 3),
            dropout4=nn.Dropout(p_drop),
            conv5=conv(4 * c, 4 * c), relu5=nn.ReLU(), maxpool5=nn.MaxPool2d(3, 3),
            dropout5=nn.Dropout(p_drop),
        )
    )


class _DefaultTrunk(nn.Module):
    """Conv/BN/ReLU/max-pool blocks, then mean and max over time: [B,1,M,T] → [B, 2·C·M']."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c_in, m = 1, arch.n_mels
        for c_out in arch.channels:
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                nn.ReLU(), nn.MaxPool2d(2, 2),
            ]
            c_in, m = c_out, m // 2
        self.blocks = nn.Sequential(*blocks)
        self.out_features = 2 * c_in * m

    def fold_batch_norm(self) -> None:
        """Each eval-mode batch norm folded into the convolution before it (in place): conv
        weights scaled per output channel, the shift become the conv's bias. Batch norm at
        inference is a per-channel affine map, so the outputs are equal to float rounding;
        one pass over the activations fewer (measured: a batch of 512 windows 0.60 → 0.31 s,
        one window 0.80 → 0.70 ms, one thread). Only for inference: the result cannot train."""
        blocks: list[nn.Module] = []
        layers = list(self.blocks)
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.BatchNorm2d):
                continue
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
                assert nxt.running_mean is not None and nxt.running_var is not None
                scale = nxt.weight / torch.sqrt(nxt.running_var + nxt.eps)
                conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                 padding=layer.padding, bias=True)
                with torch.no_grad():
                    conv.weight.copy_(layer.weight * scale[:, None, None, None])
                    shift = nxt.bias - nxt.running_mean * scale
                    conv.bias.copy_(shift if layer.bias is None else shift + layer.bias * scale)
                layer = conv.to(memory_format=torch.channels_last)
            elif isinstance(layer, nn.ReLU):
                layer = nn.ReLU(inplace=True)  # its input is the conv's fresh output
            blocks.append(layer)
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(x)  # [B, C, M', T']
        # Pooling over time keeps frequency layout (register, brightness) and drops position.
        return torch.cat([y.mean(dim=3), y.amax(dim=3)], dim=1).flatten(1)


class PitchClassEncoder(nn.Module):
    """Key-and-chord evidence from a window's pitch-class rows, the same in every key.

    [N, 12, T] standardised log pitch-class rows → [N, 12 + 2K]: the window's mean profile,
    and K learned 12-step templates matched against it (and against each frame, averaged over
    the window) at all twelve transpositions, keeping the best match. A major triad and a minor
    one are mirror images, so a transposition-invariant summary must not be reflection-invariant
    too (as |DFT| of the profile is): template matching is not. The LSTM integrates this
    evidence over hops, as a listener settles on a key.
    """

    def __init__(self, templates: int = 32) -> None:
        super().__init__()
        self.templates = nn.Parameter(torch.randn(12, templates) / 12**0.5)
        self.bias = nn.Parameter(torch.zeros(2, templates))
        # _rotate[i, r] = (i - r) mod 12: templates[_rotate] holds every template at every
        # rotation, so one matrix product matches a profile against all of them.
        idx = (torch.arange(12)[:, None] - torch.arange(12)[None, :]) % 12
        self.register_buffer("_rotate", idx, persistent=False)
        self.out_features = 12 + 2 * templates
        #: The templates at every rotation, kept once they stop changing (``freeze``).
        self._rotated: torch.Tensor | None = None

    def freeze(self) -> None:
        """Compute the rotated templates once (inference: the templates no longer change)."""
        k = self.templates.shape[1]
        self._rotated = self.templates[self._rotate].reshape(12, 12 * k).detach()

    def forward(self, chroma: torch.Tensor) -> torch.Tensor:
        k = self.templates.shape[1]
        rotated = (self._rotated if self._rotated is not None
                   else self.templates[self._rotate].reshape(12, 12 * k))  # [12, rotation · K]

        def best(profile: torch.Tensor) -> torch.Tensor:
            """[..., 12] → [..., K]: each template's best match over the 12 rotations."""
            return (profile @ rotated).unflatten(-1, (12, k)).amax(dim=-2)

        mean = chroma.mean(dim=2)  # [N, 12]
        whole = best(mean) + self.bias[0]
        frames = best(chroma.transpose(1, 2)).mean(dim=1) + self.bias[1]  # [N, K]
        return torch.cat([mean, whole, frames], dim=1)


class StreamTagModel(nn.Module):
    """CNN window encoder (+ pitch-class encoder) → LSTM (one step per hop) → neck → heads.

    Input windows are frames ``[B, n_features, window_frames]`` as the frontend makes them
    (mel bands, then pitch-class rows if ``arch.n_chroma``); the model standardises them with
    its own ``input_mean``/``input_std`` [n_features] buffers (training statistics, stored in
    the checkpoint).
    """

    def __init__(self, arch: ArchConfig, heads: list[HeadSpec]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("a model needs at least one head")
        names = [h.name for h in heads]
        if len(set(names)) != len(names):
            raise ValueError(f"head names must be unique, got {names}")
        self.arch = arch
        self.heads = list(heads)
        self.register_buffer("input_mean", torch.zeros(arch.n_features))
        self.register_buffer("input_std", torch.ones(arch.n_features))
        if arch.preset == "seed":
            c = arch.channels[0]
            self.trunk = _seed_trunk(c)
            features = 4 * c
        else:
            self.trunk = _DefaultTrunk(arch)
            features = self.trunk.out_features
        #: The first ``sound_features`` of ``encode``'s output: the CNN's summary of the window's
        #: mel bands alone, no memory of earlier hops (novelty compares these; streamtag.embedding).
        self.sound_features = features
        # Channels-last convolutions and pooling (the weights here, the input in ``encode``);
        # measured on the 2-core CPU against the default layout: a live step 3.5-3.9 against
        # 4.3-4.7 ms, 256 hops offline 0.41 against 0.64 s, a training batch (16 x 12 hops,
        # forward and backward) 0.70 against 1.0 s; max-pooling alone is 6x faster. Outputs
        # equal to ~1e-6. Checkpoints store the weights contiguous (save_checkpoint).
        self.trunk.to(memory_format=torch.channels_last)
        self.pitch: PitchClassEncoder | None = None
        if arch.n_chroma:
            if arch.n_chroma != 12:
                raise ValueError(f"n_chroma: expected 0 or 12, got {arch.n_chroma}")
            self.pitch = PitchClassEncoder()
            features += self.pitch.out_features
        #: Width of ``encode``'s output: the sound features, then the pitch-class encoder's
        #: (its mean profile first, then its template matches).
        self.encoded_features = features
        self.lstm = nn.LSTM(features, arch.lstm_hidden)
        layers: list[nn.Module] = []
        width = arch.lstm_hidden
        for i, n in enumerate(arch.neck):
            layers.append(nn.Linear(width, n))
            if arch.preset == "seed":
                # As published: dropout after fc6 and fc7, and no nonlinearity anywhere.
                if i < 2:
                    layers.append(nn.Dropout(arch.dropout))
            else:
                layers += [nn.ReLU(), nn.Dropout(arch.dropout)]
            width = n
        self.neck = nn.Sequential(*layers)
        self.head_layers = nn.ModuleDict({h.name: nn.Linear(width, h.size) for h in heads})
        #: ``for_inference``: every head's layer stacked into one (None: each its own).
        self._joint_heads: nn.Linear | None = None

    @property
    def inference_only(self) -> bool:
        """True for ``for_inference``'s arrangement, which cannot train or be saved."""
        return self._joint_heads is not None

    def for_inference(self) -> StreamTagModel:
        """A copy arranged to run, not to train (see the module docstring): eval mode, no
        gradients, batch norm folded, one product for all heads. This model is unchanged."""
        m = copy.deepcopy(self).eval().requires_grad_(False)
        if isinstance(m.trunk, _DefaultTrunk):
            m.trunk.fold_batch_norm()
        if m.pitch is not None:
            m.pitch.freeze()
        layers = [m.head_layers[h.name] for h in m.heads]
        joint = nn.Linear(layers[0].in_features, sum(la.out_features for la in layers))
        with torch.no_grad():
            joint.weight.copy_(torch.cat([la.weight for la in layers]))
            joint.bias.copy_(torch.cat([la.bias for la in layers]))
        m._joint_heads = joint.requires_grad_(False)
        return m

    # -- pieces ----------------------------------------------------------------------------
    def encode(self, windows: torch.Tensor, sound: torch.Tensor | None = None) -> torch.Tensor:
        """[N, n_features, T] windows → [N, F] features (each window independently): the
        sound features (``encode_sound``; ``sound`` [N, sound_features] when already
        computed), then the pitch-class encoder's (``encode_pitch``)."""
        y = self.encode_sound(windows) if sound is None else sound
        if self.pitch is None:
            return y
        return torch.cat([y, self.encode_pitch(windows)], dim=1)

    def encode_sound(self, windows: torch.Tensor) -> torch.Tensor:
        """[N, n_features, T] windows → [N, sound_features]: the CNN's summary of each window's
        mel bands (its pitch-class rows are not read)."""
        m = self.arch.n_mels
        x = (windows[:, :m] - self.input_mean[:m, None]) / self.input_std[:m, None]
        return self.trunk(x.unsqueeze(1).contiguous(memory_format=torch.channels_last)).flatten(1)

    def encode_pitch(self, windows: torch.Tensor) -> torch.Tensor:
        """[N, n_features, T] windows → [N, encoded_features − sound_features]: the
        pitch-class encoder's features of each window's pitch-class rows (its mel bands are
        not read). Needs ``arch.n_chroma``."""
        if self.pitch is None:
            raise ValueError("this model has no pitch-class rows (arch.n_chroma is 0)")
        m = self.arch.n_mels
        return self.pitch((windows[:, m:] - self.input_mean[m:, None]) / self.input_std[m:, None])

    def decode(self, hidden: torch.Tensor, activate: bool = True) -> dict[str, torch.Tensor]:
        """[..., H] LSTM outputs → {head: [..., K]} (activated, or raw logits for training)."""
        z = self.neck(hidden)
        out = {}
        if self._joint_heads is not None:
            joint = self._joint_heads(z).split([h.size for h in self.heads], dim=-1)
            for spec, y in zip(self.heads, joint, strict=True):
                out[spec.name] = activate_head(spec, y) if activate else y
            return out
        for spec in self.heads:
            y = self.head_layers[spec.name](z)
            out[spec.name] = activate_head(spec, y) if activate else y
        return out

    def initial_state(self, batch: int = 1) -> LstmState:
        z = torch.zeros(1, batch, self.arch.lstm_hidden)
        return LstmState(z, z.clone())

    # -- the two ways to run it --------------------------------------------------------------
    def step(
        self, window: torch.Tensor, state: LstmState | None = None, activate: bool = True
    ) -> tuple[dict[str, torch.Tensor], LstmState]:
        """One hop. window [B, n_features, T] (or [n_features, T]) → ({head: [B, K]}, new state)."""
        if window.dim() == 2:
            window = window.unsqueeze(0)
        return self.step_features(self.encode(window), state, activate)

    def step_features(
        self, feats: torch.Tensor, state: LstmState | None = None, activate: bool = True
    ) -> tuple[dict[str, torch.Tensor], LstmState]:
        """One hop from ``encode``'s output [B, F] → ({head: [B, K]}, new state)."""
        state = state if state is not None else self.initial_state(feats.shape[0])
        if torch.is_grad_enabled():
            y, (h, c) = self.lstm(feats.unsqueeze(0), (state.h, state.c))  # y [1, B, H]
            return self.decode(y[0], activate), LstmState(h, c)
        # One time step by hand, nn.LSTM's equations and weights: its fused kernel spends
        # ~1.5 ms on a single step here (profiled), these two products ~0.05 ms.
        lstm = self.lstm
        gates = torch.addmm(lstm.bias_ih_l0, feats, lstm.weight_ih_l0.t())
        gates = gates + torch.addmm(lstm.bias_hh_l0, state.h[0], lstm.weight_hh_l0.t())
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * state.c[0] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return self.decode(h, activate), LstmState(h.unsqueeze(0), c.unsqueeze(0))

    def forward_sequence(
        self, windows: torch.Tensor, state: LstmState | None = None, activate: bool = True
    ) -> tuple[dict[str, torch.Tensor], LstmState]:
        """A sequence of hops. windows [B, S, n_features, T] → ({head: [B, S, K]}, final state).

        The CNN sees all B·S windows in one batch; the LSTM runs over S.
        """
        return self.sequence_features(self.encode_sequence(windows), state, activate)

    def forward_chunked(
        self, windows: torch.Tensor, state: LstmState | None = None, activate: bool = True,
        chunk: int = 256,
    ) -> tuple[dict[str, torch.Tensor], LstmState | None]:
        """``forward_sequence`` over windows [B, S, n_features, T] in chunks of ``chunk`` hops,
        the LSTM state carried from chunk to chunk → ({head: [B, S, K]}, final state).

        The same outputs as one ``forward_sequence`` call (the LSTM is causal), with the CNN's
        activations bounded by the chunk instead of S. The one chunked loop: evaluation and
        the trainer's validation run long clips through it.
        """
        parts: dict[str, list[torch.Tensor]] = {}
        for i in range(0, windows.shape[1], chunk):
            out, state = self.forward_sequence(windows[:, i:i + chunk], state, activate)
            for k, v in out.items():
                parts.setdefault(k, []).append(v)
        return {k: torch.cat(v, dim=1) for k, v in parts.items()}, state

    def encode_sequence(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [B, S, n_features, T] → [B, S, F], all B·S windows in one CNN batch."""
        b, s = windows.shape[:2]
        return self.encode(windows.reshape(b * s, *windows.shape[2:])).reshape(b, s, -1)

    def sequence_features(
        self, feats: torch.Tensor, state: LstmState | None = None, activate: bool = True
    ) -> tuple[dict[str, torch.Tensor], LstmState]:
        """A sequence of hops from ``encode``'s output [B, S, F] → ({head: [B, S, K]}, state)."""
        state = state if state is not None else self.initial_state(feats.shape[0])
        y, (h, c) = self.lstm(feats.transpose(0, 1), (state.h, state.c))  # y [S, B, H]
        return self.decode(y.transpose(0, 1), activate), LstmState(h, c)

    def forward(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_sequence(windows)[0]


def activate_head(spec: HeadSpec, logits: torch.Tensor) -> torch.Tensor:
    """Raw head outputs [..., K] → the values the head reports."""
    if spec.kind == "regression":
        if spec.activation == "range" and spec.range is not None:
            lo, hi = spec.range
            return lo + (hi - lo) * torch.sigmoid(logits)
        return logits
    if spec.kind == "multiclass":
        return torch.softmax(logits, dim=-1)
    if spec.kind == "multilabel":
        return torch.sigmoid(logits)
    return nn.functional.normalize(logits, dim=-1)


def build_model(preset: str, heads: list[HeadSpec], **overrides: object) -> StreamTagModel:
    """A fresh model of a named preset (``seed`` or ``default``)."""
    if preset not in ARCH_PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; known: {', '.join(ARCH_PRESETS)}")
    arch = ARCH_PRESETS[preset]
    if overrides:
        arch = ArchConfig.from_dict({**arch.to_dict(), **overrides})
    if preset == "seed":
        heads = [h if h.kind != "regression" else _identity(h) for h in heads]
    return StreamTagModel(arch, heads)


def _identity(h: HeadSpec) -> HeadSpec:
    # Seed 000 ends in nn.Identity(); post-processing clips to the declared range.
    return HeadSpec(h.name, h.kind, h.labels, h.range, "identity")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "ARCH_PRESETS", "DEFAULT_ARCH", "EMOTION_HEAD", "HEAD_KINDS", "INSTRUMENT_CLASSES",
    "INSTRUMENT_HEAD", "SEED_ARCH", "TIMBRE_HEAD", "TIMBRE_NAMES", "ArchConfig", "HeadSpec",
    "LstmState", "PitchClassEncoder", "StreamTagModel", "activate_head", "build_model",
    "count_parameters",
]
