"""What the daemon smooths before OSC (ZeroMQ gets the raw estimate): per mapped value
(``make_smoother``, used by the mapper) and per head value of an estimate (``EstimateSmoother``).

Both build on ``mapping.Smoother`` from the config's ``outputs.osc.smoothing`` section.
"""

from __future__ import annotations

import numpy as np

from streamtag.config import SmoothingConfig
from streamtag.estimate import HopEstimate, reported_values
from streamtag.model import HeadSpec
from streamtag.publish.mapping import Smoother


def make_smoother(cfg: SmoothingConfig, hop_s: float) -> Smoother | None:
    """The smoother ``cfg`` asks for, stepped every hop of ``hop_s`` [s] (None: none)."""
    if cfg.kind == "exp":
        return Smoother.exponential(cfg.time_s, hop_s)
    if cfg.kind == "hold":
        return Smoother.hold(cfg.threshold)
    return None


class EstimateSmoother:
    """Per-output smoothing of the heads sent over OSC.

    Works on the engine's typed estimates: every numeric head value of every stream has its
    own smoother, fed the value as the record reports it (``reported_values``); the smoothed
    estimate goes through the same ``to_record`` as the raw one, so derived values (quadrant,
    top class) are recomputed from the smoothed ones and never contradict them.
    """

    def __init__(self, cfg: SmoothingConfig, hop_s: float, heads: list[HeadSpec]) -> None:
        self._cfg, self._hop_s = cfg, hop_s
        self._heads = {h.name: h for h in heads}
        self._smoothers: dict[tuple[str, str, str], Smoother] = {}
        self.enabled = cfg.kind != "none"

    def reset(self) -> None:
        self._smoothers.clear()

    def __call__(self, est: HopEstimate) -> HopEstimate:
        if not self.enabled:
            return est
        heads = dict(est.heads)
        for name, spec in self._heads.items():
            values = est.heads.get(name)
            if spec.kind not in ("regression", "multiclass", "multilabel") or values is None:
                continue
            heads[name] = np.array([
                self._smooth(est.stream, name, label, x)
                for label, x in zip(spec.labels, reported_values(spec, values), strict=True)])
        return est.with_heads(heads)

    def _smooth(self, stream: str, head: str, label: str, x: float) -> float:
        key = (stream, head, label)
        s = self._smoothers.get(key)
        if s is None:
            s = make_smoother(self._cfg, self._hop_s)
            assert s is not None  # enabled: the config names a smoother
            self._smoothers[key] = s
        return s.process(float(x))
