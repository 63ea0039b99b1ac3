"""Write the model card of a training run (markdown on stdout) and copy its figures.

Run: python scripts/write_model_card.py RUN_DIR [--previous EVAL_DIR] [--loo LOO_MD]
        [--entry EVAL_DIR] [--recorded EVAL_DIR ...] > streamtag/assets/MODEL_CARD.md
--previous: a ``streamtag evaluate`` report folder of the model this one replaces, scored on the
same validation clips (the card then compares the two, head by head and per texture); --loo:
the leave-one-sample-set-out tables (``python -m streamtag.train.loo``'s ``loo.md``); --entry:
a ``streamtag evaluate --entry`` report folder of this model (entry after a pause, beside the
previous model's from --previous); --recorded: ``streamtag evaluate`` report folders of models
on the recorded set's held-out pieces (``corpus build --holdout tonejs``), one column each.
The numbers come from the run's own files: metrics.json (per epoch), report/report.json and
report.md (the final evaluation through the engine on the held-out SoundFont), the corpus's
corpus.json and the checkpoint's metadata. Figures are copied to streamtag/assets/card/.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from streamtag.checkpoint import load_checkpoint
from streamtag.model import count_parameters
from streamtag.train.corpus.tags import TAG_DEFINITIONS
from streamtag.train.evaluate import CLEAR

ASSETS = Path(__file__).resolve().parent.parent / "streamtag" / "assets"

TARGETS = [
    ("instrument accuracy per hop after the first second", ">= 0.95, every class >= 0.85"),
    ("emotion quadrant accuracy", ">= 0.85 after 3 s, for each texture"),
    ("valence / arousal Pearson r", ">= 0.8 after 3 s, for each texture"),
    ("timbre MAE per descriptor", "<= 0.05"),
    ("per-hop cost (model.step) p99", "<= 2 ms with one thread (<= 10 ms at first)"),
    ("piece retrieval top-1 after 5 s (pieces never seen in training)", ">= 0.9"),
    ("known / unknown ROC AUC", ">= 0.9"),
    ("novelty: splices detected within 1 s, at <= 1 false alarm per minute", ">= 0.9"),
]


def _per_texture(textures: dict[str, Any], key: str, clear_key: str | None,
                 what: str = "") -> str:
    """The per-texture part of a target's cell, e.g. `` (accompanied 0.80, solo 0.72; on clear
    clips ... 0.88 / 0.82)``, from a report's per-texture emotion metrics; empty without."""
    if not textures:
        return ""
    text = what + ", ".join(f"{t} {_fmt(m.get(key))}" for t, m in textures.items())
    clear = [_fmt(m.get(clear_key)) for m in textures.values()
             if clear_key and m.get(clear_key) is not None]
    if clear and len(clear) == len(textures):
        text += f"; on clear clips (labels ≥ {CLEAR:g} from both axes) {' / '.join(clear)}"
    return f" ({text})"


def _extra_corpora(cfg: dict[str, Any]) -> str:
    """A sentence on each corpus trained on beside the main one (``data.extra_corpora``), from
    its corpus.json; empty when there is none."""
    parts = []
    for folder in cfg["data"].get("extra_corpora") or []:
        c = json.loads((Path(folder) / "corpus.json").read_text())
        parts.append(f"{', '.join(c['families'])} clips of another build (seed {c['seed']}: "
                     f"other pieces, the same recipe), {c['n_per_class']} training clips per "
                     f"class (`streamtag corpus build --families {','.join(c['families'])} "
                     f"--seed {c['seed']} --n-per-class {c['n_per_class']} --val-per-class "
                     f"{c['val_per_class']}`)")
    return (" Also trained on (`data.extra_corpora`): " + "; ".join(parts) + ".") if parts else ""


def main(run_dir: Path, previous: Path | None = None, loo: Path | None = None,
         entry: Path | None = None, recorded: list[Path] | None = None,
         loo_note: str | None = None, also: list[Path] | None = None,
         long: list[Path] | None = None, recipe_note: str | None = None) -> str:
    report = json.loads((run_dir / "report" / "report.json").read_text())
    report_md = (run_dir / "report" / "report.md").read_text()
    epochs = json.loads((run_dir / "metrics.json").read_text())
    epochs = epochs["epochs"] if isinstance(epochs, dict) else epochs
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    corpus_dir = Path(cfg["data"]["corpus"])
    corpus = json.loads((corpus_dir / "corpus.json").read_text())
    ck = load_checkpoint(run_dir / "best.safetensors")
    best = max(epochs, key=lambda e: e["validation"]["score"])

    card_dir = ASSETS / "card"
    card_dir.mkdir(parents=True, exist_ok=True)
    for png in (run_dir / "report").glob("*.png"):
        shutil.copy(png, card_dir / png.name)
    for png in (run_dir / "plots").glob("*loss*.png"):
        shutil.copy(png, card_dir / png.name)
    body = report_md.split("\n", 1)[1].replace("](", "](card/")

    train_fonts = [k for k, v in corpus["soundfonts"].items() if v["split"] == "train"]
    val_fonts = [k for k, v in corpus["soundfonts"].items() if v["split"] == "validation"]
    kits = corpus.get("drumkits", {})
    lines = [
        "# streamtag default model — model card",
        "",
        f"- checkpoint: `default.safetensors`, id `{ck.id}`, preset `{ck.model.arch.preset}`, "
        f"{count_parameters(ck.model):,} parameters",
        f"- heads: {', '.join(f'{h.name} ({h.kind}, {h.size})' for h in ck.heads)}",
        f"- frontend: {ck.frontend.sample_rate_hz} Hz, n_fft {ck.frontend.n_fft}, hop "
        f"{ck.frontend.hop_length}, {ck.frontend.n_mels} log-mels"
        + (f" + {ck.frontend.n_chroma} pitch-class rows ({ck.frontend.chroma_memory_s:g} s "
           "memory)" if ck.frontend.n_chroma else "") + "; window "
        f"{ck.model.arch.window_frames} frames, hop {ck.model.arch.hop_frames} frames (0.5 s)",
        f"- rebuilt by: `bash scripts/train_default_model.sh` (corpus seed {corpus['seed']}, "
        f"training seed {cfg['train']['seed']})",
        "",
        "## Data",
        "",
        f"The built-in corpus (`streamtag corpus build --size default`): "
        f"{corpus['n_per_class']} training and {corpus['val_per_class']} validation clips per "
        f"class, {corpus['clip_s']:g} s each at {corpus['sample_rate_hz']} Hz, rendered with "
        "FluidSynth" + (", the Synthesis ToolKit's physical models (`stk`: "
                        + _stk_classes(corpus_dir) + ")" if "stk" in corpus["soundfonts"] else "")
        + (" and recorded notes of real instruments (`tonejs`: the tonejs-instruments "
           "packages from VSCO 2 and Karoryfer, for seven of the eight classes, on pieces of "
           "their own; `streamtag/train/corpus/tonejs.py`)"
           if "tonejs" in corpus["soundfonts"] else "")
        + f". Training sample sets: {', '.join(train_fonts)}; validation (never seen in "
        f"training): {', '.join(val_fonts)}. "
        + _augmentation(corpus, cfg) + "Drums: Hydrogen kits "
        f"({sum(v['split'] == 'train' for v in kits.values())} for training, "
        f"{', '.join(k for k, v in kits.items() if v['split'] == 'validation')} held out). "
        "The Debian freepats set and the Hydrogen kits Millo-Drums_v.1, The Black Pearl 1.0 and "
        "circAfrique v4 are reserved for independent evaluation and were not used in any way."
        + _extra_corpora(cfg),
        "",
        "- **instrument**: the 8 Medley-solos-DB classes played by General MIDI programs "
        "across each instrument's range (scales, arpeggios, phrases); the `female singer` "
        "class is GM choir/voice patches, not a real singer.",
        "- **emotion**: melodies rendered with controlled cues (mode, tempo, register, "
        "dynamics, articulation, timbre), labelled by the cue model in "
        "`streamtag/train/corpus/emotion_cues.py` (directions after Eerola, Friberg & Bresin "
        "2013). **These labels are a proxy, not listener ratings**: the model learns the cue "
        "model, and its valence/arousal on real recordings are untested. Half the pieces of "
        "each quadrant are solo melodies, half accompanied (chords below the melody); the "
        "labels are centred for both textures: " + _label_statistics() + ".",
        "- **timbre**: labels from the project's reference descriptors "
        "(`streamtag/train/descriptors.py`), computed for every hop on the 1 s of audio the "
        "model's window covers at that hop (`data.per_hop_timbre`); hardness is that of the "
        "strongest onset in that second (a rise of at least 6 dB over the 50 ms before it; "
        "none: soft), so a window that cuts into a held note is not an attack.",
        "- **tags**: read off each clip's rendering recipe (its General MIDI programs, its "
        "composed mode, its written tempo), never guessed from the audio; a tag the recipe "
        "leaves open is masked, not negative. Definitions "
        "(`streamtag/train/corpus/tags.py`):",
        "",
        "| tag | holds when |",
        "| --- | --- |",
        *[f"| {t} | {d} |" for t, d in TAG_DEFINITIONS.items()],
        "",
        "- **embedding**: 32 dims, trained with seed 003's triplet loss (batch-hard mining, "
        "margin 0.2): positives are other hops of the same piece and its render through another "
        "SoundFont or kit (a batch keeps a piece's renders together), negatives other pieces. "
        "The 2-D projection published as `/streamtag/embedding/xy` is a PCA of training-hop "
        "embeddings stored in the checkpoint; `known_distance` (the reference library's "
        "known/new threshold) is calibrated on the validation pieces.",
        "",
        "## Recipe",
        "",
        f"Adam (learning rate {_lr_phases(epochs)}), ReduceLROnPlateau (factor "
        f"{cfg['scheduler']['factor']}, patience {cfg['scheduler']['patience']}), "
        + (f"the running average of the weights validated and saved (decay "
           f"{cfg['train']['ema_decay']} per step), " if cfg["train"].get("ema_decay") else "")
        + f"{len(epochs)} epochs ({cfg['train']['batch_clips']} recordings × "
        f"{cfg['train']['segment_hops']} hops per step, LSTM state carried within a recording), "
        "SpecAugment, losses: "
        + ", ".join(f"{h['name']} {h['loss']}" for h in cfg["heads"])
        + f". Two processes (torchrun, gloo). Best epoch by validation score: {best['epoch']}."
        + (f" The run started from the weights of model {ck.provenance['init']} "
           "(`train.init`): its epochs fine-tune that model." if ck.provenance.get("init")
           else "") + (f" {recipe_note}" if recipe_note else ""),
        "",
        "![training curves](card/loss.png)",
        "",
        "## Targets and where the model lands",
        "",
        "| target | wanted | measured |",
        "| --- | --- | --- |",
    ]
    heads = {h: v for h, v in _report_heads(run_dir).items()}
    inst = heads.get("instrument", {})
    emo = heads.get("emotion", {})
    tim = heads.get("timbre", {})
    emb = report.get("embedding") or {}
    ret5 = (emb.get("retrieval") or {}).get("by_seconds", {}).get("5", {})
    ku = emb.get("known_unknown") or {}
    nov = emb.get("novelty") or {}
    measured = [
        _fmt(inst.get("after_1s_accuracy")),
        f"{_fmt(emo.get('quadrant_accuracy'))} per hop"
        + (f"; {_fmt(emo['late_quadrant_accuracy'])} after 3 s"
           if emo.get("late_quadrant_accuracy") is not None else "")
        + _per_texture(emo.get("textures") or {}, "quadrants_after_3s",
                       "quadrants_clear_after_3s"),
        f"{_fmt(emo.get('valence_r'))} / {_fmt(emo.get('arousal_r'))} per hop"
        + (f"; {_fmt(emo['late_valence_r'])} / {_fmt(emo['late_arousal_r'])} after 3 s"
           if emo.get("late_valence_r") is not None else "")
        + _per_texture(emo.get("textures") or {}, "valence_r_after_3s", None, "valence: "),
        f"worst {_fmt(tim.get('max_mae'))}, mean {_fmt(tim.get('mean_mae'))}",
        f"{report['cost']['p99_ms']:.2f} ms (mean {report['cost']['mean_ms']:.2f} ms, "
        f"{report['cost'].get('threads', '?')} torch thread(s))",
        _fmt(ret5.get("top1")),
        _fmt(ku.get("roc_auc")),
        f"{_fmt(nov.get('detection_rate'))} at {_fmt(nov.get('false_alarms_per_min'))} "
        "false alarms per minute (each half of the streams at the threshold the other chose)"
        + (f"; {_fmt(nov['all_streams']['detection_rate'])} at "
           f"{_fmt(nov['all_streams']['false_alarms_per_min'])} with the threshold chosen on "
           "all of them" if nov.get("all_streams") else ""),
    ]
    for (name, wanted), got in zip(TARGETS, measured, strict=True):
        lines.append(f"| {name} | {wanted} | {got} |")
    lines += [
        "",
        *_limits(report),
        "",
        *(_comparison(report, json.loads((previous / "report.json").read_text()),
                      [json.loads((d / "report.json").read_text()) for d in also or []])
          if previous is not None else [PREVIOUS]),
        "",
        *(_entry_comparison(json.loads((entry / "report.json").read_text()),
                            json.loads((previous / "report.json").read_text())
                            if previous is not None else None)
          if entry is not None else []),
        *(_long_pieces([json.loads((d / "report.json").read_text()) for d in long])
          if long else []),
        *(_recorded([json.loads((d / "report.json").read_text()) for d in recorded],
                    ck.id, "tonejs" in corpus["soundfonts"]) if recorded else []),
        *(["## Leave one sample set out", "",
           "Each row is a model trained without that SoundFont (and one Hydrogen kit group) and "
           "scored on it through the engine (`bash scripts/leave_one_out.sh`; "
           "`streamtag/train/loo.py`)." + (f" {loo_note}" if loo_note else ""), "",
           loo.read_text().strip(), ""]
          if loo is not None and loo.is_file() else []),
        "## Baselines on the same corpus",
        "",
        "From `benchmarks/results/baselines.md` (`benchmarks/baselines/compare.py`): the "
        "`seed` preset (seed 000's AudioLSTMCNN2 and recipe) and seed 002's MFCC-LSTM, trained "
        "on the same class-balanced subset of this corpus as the default preset and scored on "
        "the same validation clips. Real-recording evaluation (Medley-solos-DB, DEAM/PMEmo) is "
        "not done: the loaders exist, the data is not shipped.",
        "",
        *_baselines(),
        "",
        "## Validation report (held-out SoundFont, through `Engine.analyze`)",
        "",
        body.strip(),
        "",
    ]
    return "\n".join(lines)


def _stk_classes(corpus_dir: Path) -> str:
    """The classes the corpus played on STK, from its manifest ("clarinet, flute and …")."""
    classes: set[str] = set()
    with (corpus_dir / "manifest.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("soundfont") == "stk" and row["labels"].get("instrument"):
                classes.add(row["labels"]["instrument"])
    names = sorted(classes)
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _lr_phases(epochs: list[dict[str, Any]]) -> str:
    """The learning rate each run of epochs trained at, from metrics.json ("0.001 in epochs
    1-40, 0.00025 in 41-46")."""
    phases: list[list[Any]] = []
    for e in epochs:
        if phases and phases[-1][0] == e["lr"]:
            phases[-1][2] = e["epoch"]
        else:
            phases.append([e["lr"], e["epoch"], e["epoch"]])
    return ", ".join(f"{lr:g} in epoch{'s' if a != b else ''} {a}" + (f"-{b}" if a != b else "")
                     for lr, a, b in phases)


def _augmentation(corpus: dict[str, Any], cfg: dict[str, Any]) -> str:
    """What the corpus and the trainer changed in the audio (a sentence or two; "" if nothing)."""
    aug = corpus.get("augment") or {}
    on = sorted(k.removesuffix("_p") for k, v in aug.items()
                if k.endswith("_p") and isinstance(v, (int, float)) and v > 0)
    out = ""
    if on:
        out += ("Corpus augmentation, each with its own probability per clip (recorded in "
                "each manifest row): " + ", ".join(on).replace("_", " ") + ". ")
    a = cfg.get("augment") or {}
    if a.get("pre_roll_p"):
        lo, hi = a.get("pre_roll_s", (0, 0))
        out += (f"Training plays {a['pre_roll_p']:.0%} of the recordings in half of the epochs "
                f"after a pre-roll ({lo:g}-{hi:g} s of "
                + ", ".join(a.get("pre_roll_kinds", [])) + ", at a random phase of the hop "
                "grid; `streamtag/train/preroll.py`). ")
    return out


def _report_heads(run_dir: Path) -> dict[str, dict]:
    """Headline numbers from the report's JSON (the same run's final evaluation)."""
    r = json.loads((run_dir / "report" / "report.json").read_text())
    out: dict[str, dict] = {}
    for name, m in r["heads"].items():
        if m.get("kind") == "multiclass":
            out[name] = {"after_1s_accuracy": m["per_hop_after_1s"]["accuracy"]}
        elif name == "emotion":
            o = m["per_hop"]["outputs"]
            late = m.get("per_hop_after_3s") or {}
            lo = late.get("outputs") or {}
            out[name] = {"quadrant_accuracy": m["per_hop"].get("quadrant_accuracy"),
                         "valence_r": o["valence"]["pearson_r"],
                         "arousal_r": o["arousal"]["pearson_r"],
                         "late_quadrant_accuracy": late.get("quadrant_accuracy"),
                         "late_valence_r": (lo.get("valence") or {}).get("pearson_r"),
                         "late_arousal_r": (lo.get("arousal") or {}).get("pearson_r"),
                         "textures": m.get("textures") or {}}
        elif m.get("kind") == "regression":
            maes = [v["mae"] for v in m["per_hop"]["outputs"].values()]
            out[name] = {"max_mae": max(maes), "mean_mae": sum(maes) / len(maes)}
    return out


def _limits(report: dict) -> list[str]:
    """What limits the model, with the numbers of this run's report."""
    h = report["heads"]
    out = []
    if "emotion" in h and "tags" in h:
        tags = h["tags"]["per_hop"]["tags"]
        val = h["emotion"]["per_hop"]["outputs"]["valence"]["pearson_r"]
        aro = h["emotion"]["per_hop"]["outputs"]["arousal"]["pearson_r"]
        late = h["emotion"].get("per_hop_after_3s")
        late_txt = (f", {_fmt(late['outputs']['valence']['pearson_r'])} on hops after 3 s "
                    f"(quadrant accuracy {_fmt(late['quadrant_accuracy'])})" if late else "")
        out.append(
            f"What limits it. Emotion: valence in this corpus is carried mostly by mode. The "
            f"frontend's pitch-class rows (a leaky 4 s memory) and the model's pitch-class "
            f"encoder let it tell major from minor (tag AP {_fmt(tags['major']['ap'])} / "
            f"{_fmt(tags['minor']['ap'])}; 0.612 / 0.490 for model 92e47706795e, which had the "
            f"64 mel bands alone), so valence reaches r {_fmt(val)} per hop{late_txt}. A key "
            "shows over seconds of notes, not in one: the first seconds after a start or a "
            "change of key stay uncertain, and the 6 s validation clips weigh them heavily. "
            f"Arousal (tempo, dynamics, register): r {_fmt(aro)}.")
        out.append("")
    if "timbre" in h:
        o = h["timbre"]["per_hop"]["outputs"]
        order = sorted(o, key=lambda k: o[k]["mae"])
        rows = ", ".join(f"{k} {o[k]['mae']:.3f} (r {_fmt(o[k]['pearson_r'], 2)})"
                         for k in order)
        met = [k for k in order if o[k]["mae"] <= 0.05]
        out.append(
            "Timbre: labels are per hop (the reference descriptors of the second the model "
            "hears; hardness that of the strongest onset in it, found with the 0.1 s before in "
            f"view), so each hop is scored against its own audio. MAE per descriptor: {rows}. "
            + (f"{len(met)} of {len(o)} meet the 0.05 target. " if met else
               "None meets the 0.05 target. ")
            + "The labels of one second of music move with every note and accent, and the "
            "descriptors' own scatter from window to window is part of what the model is "
            "scored against.")
        out.append("")
    emb = report.get("embedding") or {}
    if emb.get("retrieval"):
        by = emb["retrieval"]["by_seconds"]
        times = list(by)
        first, last = times[0], times[-1]
        nov = emb.get("novelty") or {}
        ku = emb["known_unknown"]

        def verdict(det: float | None, fa: float | None) -> str:
            if det is None or fa is None or det < 0.9:
                return "misses the target of 0.9"
            if fa > 1.0:
                return "detects enough, but with false alarms just over the 1 per minute allowed"
            return "meets the target of 0.9 at no more than 1 false alarm per minute"

        out.append(
            f"References and novelty: among {emb['retrieval']['pieces']} pieces it never heard, "
            f"the right piece is the nearest reference {_fmt(by[last]['top1'])} of the time "
            f"after {last} s ({_fmt(by[first]['top1'])} after {first} s), and known pieces "
            "are told from new ones with ROC AUC "
            f"{_fmt(ku['roc_auc'])} (balanced accuracy {_fmt(ku['test_balanced_accuracy'])} "
            "with a threshold calibrated on the other half of the pieces). Both compare match "
            "vectors of the model's window encoding (the CNN's summary of each hop's second of "
            "sound and the pitch-class encoder's key features; "
            "`streamtag.embedding.match_vectors`), not the "
            "embedding head, whose LSTM carries seconds of context and smears neighbouring "
            "pieces together (0.704 and 0.844 for model b1c2319f5160's embedding). Novelty "
            f"(the last {nov.get('recent_s', 0):g} s against the {nov.get('memory_s', 0):g} s "
            "before, on the CNN's summary alone, each feature standardised by the sound scale "
            "fitted on training hops, less the median of the last "
            f"{nov.get('baseline_s', 0):g} s; each half of the splice streams picks the "
            "threshold the other half is scored at) catches "
            f"{_fmt(nov.get('detection_rate'))} of changes of piece within 1 s at "
            f"{_fmt(nov.get('false_alarms_per_min'))} false alarms per minute (per-hop AUC "
            f"{_fmt(nov.get('auc_hop'))}); it "
            f"{verdict(nov.get('detection_rate'), nov.get('false_alarms_per_min'))}. "
            "Two pieces in the same register on similar instruments barely move it. "
            "Unstandardised, with 2 s of memory and no baseline, the previous model caught "
            "0.825 this way, "
            "and the embedding itself 0.274 (model b1c2319f5160).")
    return out


PREVIOUS = (
    "Against the model it replaced (96ab9826a5cf: the same recipe for 30 epochs, trained on the "
    "earlier hardness labels; both scored here by the same `streamtag evaluate` on the same "
    "validation renders): instrument after 1 s 0.955 → 0.959; quadrants 0.702 → 0.682 per hop, "
    "0.816 → 0.797 after 3 s, 0.838 → 0.800 per clip; valence r 0.648 → 0.644 per hop, "
    "0.762 → 0.767 after 3 s; arousal r 0.855 → 0.851; the six other descriptors' MAE "
    "0.051-0.108 → 0.052-0.104 (the same); hardness r −0.25 → 0.46 against the onset labels. "
    "The earlier card's timbre numbers compared per-hop outputs with whole-clip labels (an "
    "evaluation bug, fixed): they are not comparable with these.")


def _label_statistics() -> str:
    """The cue model's valence labels over a balanced plan, per texture (a sentence)."""
    from streamtag.train.corpus.plan import emotion_label_statistics

    parts = []
    for texture, st in emotion_label_statistics(200).items():
        by_q = st["mean_valence_by_quadrant"]
        parts.append(f"{texture} mean valence {st['mean_valence']:+.3f} (quadrants 1-4: "
                     + " / ".join(f"{by_q[q]:+.2f}" for q in (1, 2, 3, 4))
                     + f"), its sign the requested quadrant's for {st['sign_split']:.3f} of "
                     f"{st['n']} pieces")
    return "; ".join(parts)


def _metric_rows(report: dict[str, Any]) -> dict[str, float | None]:
    """The headline numbers the comparison lines up, by name (None: not measured)."""
    h = report["heads"]
    out: dict[str, float | None] = {}
    ins = h.get("instrument")
    if ins:
        late = ins["per_hop_after_1s"]
        out["instrument per hop after 1 s"] = late["accuracy"]
        conf = late["confusion"]
        for i, label in enumerate(ins["labels"]):
            n = sum(conf[i])
            out[f"  {label} after 1 s"] = conf[i][i] / n if n else None
    emo = h.get("emotion")
    if emo:
        late = emo.get("per_hop_after_3s") or {}
        out["quadrants after 3 s"] = late.get("quadrant_accuracy")
        out["quadrants per clip"] = emo["per_clip"].get("quadrant_accuracy")
        out["valence r after 3 s"] = late.get("outputs", {}).get("valence", {}).get("pearson_r")
        out["arousal r after 3 s"] = late.get("outputs", {}).get("arousal", {}).get("pearson_r")
        clip_out = emo["per_clip"].get("outputs", {})
        for name in ("valence", "arousal"):
            if clip_out.get(name, {}).get("ordering") is not None:
                out[f"{name} ordering per clip"] = clip_out[name]["ordering"]
        for texture, t in (emo.get("textures") or {}).items():
            out[f"  {texture}: quadrants after 3 s"] = t.get("quadrants_after_3s")
            if t.get("quadrants_clear_after_3s") is not None:
                out[f"  {texture}: quadrants after 3 s, clear clips"] = t[
                    "quadrants_clear_after_3s"]
            out[f"  {texture}: valence r after 3 s"] = t.get("valence_r_after_3s")
    tim = h.get("timbre")
    if tim:
        out["timbre mean MAE per hop"] = tim["per_hop"].get("mean_mae")
    tags = h.get("tags")
    if tags:
        out["tags mean AP per hop"] = tags["per_hop"].get("mean_ap")
    emb = report.get("embedding") or {}
    ret = (emb.get("retrieval") or {}).get("by_seconds", {}).get("5", {})
    if ret:
        out["piece retrieval top-1 after 5 s"] = ret.get("top1")
    out["model.step p99 [ms]"] = report["cost"]["p99_ms"]
    return out


def _comparison(report: dict[str, Any], previous: dict[str, Any],
                also: list[dict[str, Any]] | None = None) -> list[str]:
    """This model against the one it replaces (and ``also``: other models' reports), all
    scored on the same validation clips."""
    others = [previous, *(also or [])]
    ids = [r["checkpoint_id"] for r in others]
    return [f"Against the model{'s' if also else ''} it is compared with ({', '.join(ids)}), "
            "all scored by the same `streamtag evaluate` through the engine on this corpus's "
            "validation clips (the held-out SoundFont; per-hop cost measured in each "
            "evaluation, on whatever load the machine had):", "",
            *_columns([*others, report], "measure", list(_metric_rows(report)))]


def _columns(reports: list[dict[str, Any]], first: str, names: list[str], *,
             headers: list[str] | None = None, drop_empty: bool = False,
             label: Callable[[str], str] = str) -> list[str]:
    """A table with one column per report (``headers``, default its checkpoint id) and one
    row per ``_metric_rows`` name (``names``, in order, shown as ``label(name)``;
    ``drop_empty``: leave out a row no report measured)."""
    rows = [_metric_rows(r) for r in reports]
    heads = headers or [r["checkpoint_id"] for r in reports]
    lines = [f"| {first} | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(reports)]
    for name in names:
        if drop_empty and all(row.get(name) is None for row in rows):
            continue
        lines.append(f"| {label(name)} | " + " | ".join(_fmt(row.get(name)) for row in rows)
                     + " |")
    return lines


def _entry_comparison(new: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    """Entry after a pause, this model beside the one it replaces (``streamtag evaluate
    --entry`` reports of both, on the same clips); [] if the new report has no entry table."""
    if not new.get("entry"):
        return []
    e = new["entry"]
    before = {(c["kind"], c["seconds"]): c for c in ((old or {}).get("entry") or {}).get(
        "cases", [])}
    old_id = (old or {}).get("checkpoint_id", "previous")
    lines = ["## Entry after a pause", "",
             f"{e['clips']} validation clips, each played after a pre-roll and starting "
             f"{e['phase_hops']:g} hop off the hop grid; each hop from {e['settle_s']:g} s into "
             "the clip is compared with `analyze` of the clip alone (`streamtag evaluate "
             "--entry`; `streamtag/train/evaluate_entry.py`). Target: top instrument agrees on "
             "≥ 0.95 of hops, median |Δvalence| ≤ 0.1, in every case. Both models go through "
             "today's engine, which starts afresh at silent hops and where the sound changes "
             "(`novelty.restart`; `streamtag/restarts.py`); the same table before the rule is "
             "in the README (\"How it works\", entry after a pause).", "",
             f"| pre-roll | seconds | agrees ({old_id}) | agrees ({new['checkpoint_id']}) "
             f"| worst clip | median |Δvalence| ({old_id}) | median |Δvalence| "
             f"({new['checkpoint_id']}) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in e["cases"]:
        b = before.get((c["kind"], c["seconds"]), {})
        lines.append(f"| {c['kind']} | {c['seconds']:g} | {_fmt(b.get('agreement'))} | "
                     f"{_fmt(c['agreement'])} | {_fmt(c['worst'])} | "
                     f"{_fmt(b.get('median_dvalence'))} | {_fmt(c['median_dvalence'])} |")
    return [*lines, ""]


def _long_pieces(reports: list[dict[str, Any]]) -> list[str]:
    """The models side by side on 30 s validation pieces (``streamtag evaluate`` reports on a
    ``corpus build --clip-s 30`` of the validation SoundFont), one column each."""
    skip = ("piece retrieval", "model.step")
    names = [n for n in _metric_rows(reports[0]) if not n.startswith(skip)]
    clips = reports[0].get("clips")
    return ["## Longer pieces", "",
             f"The same held-out SoundFont, {clips} pieces of 30 s (`streamtag corpus build "
             "--clip-s 30 --n-per-class 0 --val-per-class 20 --seed 7 --soundfonts timgm6mb`), "
             "through the engine as served: a performance lasts longer than the 6 s "
             "validation clips, whose hops after 3 s are their last six.", "",
             *_columns(reports, "measure", names), ""]


def _recorded(reports: list[dict[str, Any]], this_id: str, trained_on: bool) -> list[str]:
    """Instrument accuracy per class on the recorded set's held-out pieces, one column per
    model (``streamtag evaluate`` reports on ``corpus build --holdout tonejs``)."""
    names = [n for n in _metric_rows(reports[0]) if n.startswith("  ") and n.endswith("after 1 s")]
    heads = [r["checkpoint_id"] + (" (trained on them)" if r["checkpoint_id"] == this_id
                                   and trained_on else "") for r in reports]
    return ["## Recorded instruments", "",
             "Real recordings (the tonejs-instruments packages: VSCO 2 and Karoryfer samples; "
             "`streamtag/train/corpus/tonejs.py`) of seven of the eight classes, on pieces "
             "composed for this test (`streamtag corpus build --holdout tonejs --families "
             "instrument`), each played twice in another room: top instrument per hop after "
             "the first second, through the engine. "
             + ("This model trained on other pieces played on the same recordings, so its "
                "column is not a test on unheard instruments; the other columns are."
                if trained_on else "No model here heard these recordings in training."), "",
             *_columns(reports, "class", ["instrument per hop after 1 s", *names],
                       headers=heads, drop_empty=True, label=str.strip), ""]


def _baselines() -> list[str]:
    """The baseline table's lines (without its title), or a line saying it is missing."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "baselines.md"
    if not path.exists():
        return ["(no baseline table: run `python3 benchmarks/baselines/compare.py`)"]
    lines = [line for line in path.read_text().splitlines()[1:]
             if not line.startswith("Written by")]
    note = ("Its `shipped default` rows are the model this one replaced (id 9d73dd29632c, "
            "three heads, trained the same way without tags and embedding); this model's own "
            "numbers on all validation clips are in the report below.")
    return [*lines, "", note]


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--previous", type=Path, help="evaluate report folder of the old model")
    parser.add_argument("--loo", type=Path, help="leave-one-sample-set-out tables (loo.md)")
    parser.add_argument("--also", type=Path, nargs="+",
                        help="more `streamtag evaluate` report folders (same clips) as columns "
                             "of the comparison")
    parser.add_argument("--long", type=Path, nargs="+",
                        help="`streamtag evaluate` report folders of models on 30 s pieces")
    parser.add_argument("--loo-note", help="a sentence on the folds (which recipe they ran)")
    parser.add_argument("--recipe-note", help="sentences after the recipe (e.g. how the model "
                                              "a fine-tuning run started from was made)")
    parser.add_argument("--recorded", type=Path, nargs="+",
                        help="`streamtag evaluate` report folders of models (this one and "
                             "others) on the recorded set's held-out pieces")
    parser.add_argument("--entry", type=Path,
                        help="`streamtag evaluate --entry` report folder of this model (the "
                             "--previous folder then needs --entry too, for the comparison)")
    args = parser.parse_args()
    print(main(args.run_dir, args.previous, args.loo, args.entry, args.recorded, args.loo_note,
               args.also, args.long, args.recipe_note))
