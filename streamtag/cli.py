"""The ``streamtag`` command line. Exit codes: 0 ok, 2 usage/config error, 1 runtime failure."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from streamtag import __version__
from streamtag.config import Config
from streamtag.console import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, error, run
from streamtag.console import Parser as _Parser
from streamtag.errors import AudioError, CheckpointError, ConfigError, LibraryError

#: Raw PCM formats ``analyze -`` reads (streamtag.audiofile.SAMPLE_FORMATS; here so the parser
#: is built without importing numpy and soundfile).
SAMPLE_FORMATS = ("f32le", "s16le", "s24le", "s32le")


# -- check-config --------------------------------------------------------------------------------
def cmd_check_config(args: argparse.Namespace) -> int:
    from streamtag.config import load_config

    try:
        load_config(args.file)
    except ConfigError as e:
        for p in e.problems:
            error(p if p.startswith(f"{args.file}:") else f"{args.file}: {p}")
        return EXIT_USAGE
    print(f"{args.file}: ok")
    return EXIT_OK


# -- analyze -------------------------------------------------------------------------------------
def cmd_analyze(args: argparse.Namespace) -> int:
    from streamtag.audiofile import STDIN, RawFormat
    from streamtag.workers import cores, start_workers_early

    # --jobs N: the cores to use. Several files run in worker processes, N at a time, each
    # worker its share of the cores (standard input is read here); one file gets them all
    # (its hop stage in a thread of its own beside the model). One core: one thread.
    jobs = args.jobs or cores()
    files = len([f for f in args.files if f != STDIN])
    parallel = jobs > 1 and files > 1
    usable = max(1, min(jobs, cores()))
    per_input = max(1, usable // min(jobs, files)) if parallel else usable
    if parallel:
        # The workers' server imports torch and the model code while this process does.
        start_workers_early()
    from streamtag.analysis import (
        AnalyzeJob,
        Analyzer,
        RecordWriter,
        audio_seconds,
        run_parallel,
        use_cores,
    )

    if args.files.count(STDIN) > 1:
        error("analyze: standard input (-) can be read only once")
        return EXIT_USAGE
    if args.jobs is not None and args.jobs < 1:
        error(f"analyze: --jobs {args.jobs}: expected 1 or more")
        return EXIT_USAGE
    for flag, value in (("--rate", args.rate), ("--channels", args.channels)):
        if value is not None and value < 1:
            error(f"analyze: {flag} {value}: expected 1 or more")
            return EXIT_USAGE
    job = AnalyzeJob(args.checkpoint, args.config, args.format, args.vectors,
                     several=len(args.files) > 1,
                     raw=RawFormat(args.rate, args.channels, args.sample_format),
                     cores=per_input)
    use_cores(per_input)
    try:
        # Loads the checkpoint and checks the library against it before any audio.
        analyzer = Analyzer(job)
    except (CheckpointError, LibraryError) as e:
        error(str(e))
        return EXIT_USAGE
    failures: list[str] = []

    def failed(message: str) -> None:  # named at once: the other files still run
        error(message)
        failures.append(message)

    target = args.out or "standard output"
    try:
        out = open(args.out, "w", encoding="utf-8", newline="") if args.out else sys.stdout
    except OSError as e:
        error(f"{target}: cannot write ({e.strerror or e})")
        return EXIT_RUNTIME
    try:
        writer = RecordWriter(out, args.format)
        with _progress_factory(args.progress)(args.files, audio_seconds(args.files)) as bar:
            if parallel:
                run_parallel(job, args.files, jobs, writer, bar, failed)
            else:
                for name in args.files:
                    message = analyzer.run(name, writer, bar)
                    if message:
                        failed(message)
        out.flush()
    except OSError as e:
        error(f"{target}: cannot write ({e.strerror or e})")
        return EXIT_RUNTIME
    finally:
        if args.out:
            out.close()
    if failures:
        error(f"{len(failures)} of {len(args.files)} file(s) could not be analyzed")
        return EXIT_RUNTIME
    return EXIT_OK


# -- reference -----------------------------------------------------------------------------------
def _library_path(args: argparse.Namespace) -> Path:
    from streamtag.references import default_library_path

    return Path(args.library).expanduser() if args.library else default_library_path()


def cmd_reference_add(args: argparse.Namespace) -> int:
    """Analyse FILE… through the engine and store their match vectors under NAME (appending to
    an existing one)."""
    from streamtag.audiofile import check_long_enough, check_rate, read_audio
    from streamtag.checkpoint import resolve_checkpoint
    from streamtag.config import load_config
    from streamtag.engine import Engine
    from streamtag.references import check_name, library_lock, load_library

    cfg = load_config(args.config)
    path = _library_path(args)
    try:
        check_name(args.name)
        ck = resolve_checkpoint(args.checkpoint or cfg.model.checkpoint)
        head = ck.embedding_head
        if head is None:
            raise LibraryError(f"checkpoint {ck.id} has no embedding head: reference "
                               "recognition needs a model with one (--checkpoint F)")
        maker = Engine(ck, silence_db=cfg.analysis.silence_db)
        if path.exists():  # refuse a mismatched library before the analysis, not after
            load_library(path).check_checkpoint(ck.weights_sha256, maker.match_id)
    except (CheckpointError, LibraryError) as e:
        error(str(e))
        return EXIT_USAGE
    segments, files = [], []
    hop_s = maker.hop_s
    for name in args.files:
        try:
            audio, rate = read_audio(name)
            check_rate(name, rate)
            engine = Engine(ck, input_rate_hz=rate, silence_db=cfg.analysis.silence_db)
            check_long_enough(name, audio, rate, engine.hop_s)
            segments.append(engine.reference_vectors(audio))
        except AudioError as e:
            error(str(e))
            return EXIT_RUNTIME
        except ValueError as e:
            error(f"{name}: cannot analyze: {e}")
            return EXIT_RUNTIME
        hop_s = engine.hop_s
        files.append(name)
    try:
        # Read, add and write under the library's lock: a concurrent `reference add` waits, then
        # adds to what this one wrote (neither is lost).
        with library_lock(path):
            if path.exists():
                library = load_library(path)
                library.check_checkpoint(ck.weights_sha256, maker.match_id)
            else:
                library = maker.new_library()
            library.hop_s = hop_s
            ref = library.add(args.name, segments, files)
            library.save(path)
    except LibraryError as e:
        error(str(e))
        return EXIT_RUNTIME
    except OSError as e:
        error(f"{path}: cannot write ({e.strerror or e})")
        return EXIT_RUNTIME
    print(f"{args.name}: {ref.hops} hops ({ref.hops * library.hop_s:.1f} s of sound) from "
          f"{len(ref.files)} file(s); library {path} ({len(library.names)} reference(s), "
          f"checkpoint {library.checkpoint_id})")
    return EXIT_OK


def cmd_reference_list(args: argparse.Namespace) -> int:
    from streamtag.references import load_library

    path = _library_path(args)
    if not path.exists():
        print(f"no references: {path} does not exist (add one with `streamtag reference add`)")
        return EXIT_OK
    try:
        library = load_library(path)
    except LibraryError as e:
        error(str(e))
        return EXIT_USAGE
    print(f"{path}: {len(library.names)} reference(s), checkpoint {library.checkpoint_id}, "
          f"{library.dims}-dim embeddings")
    for ref in library.references.values():
        print(f"  {ref.name}\t{ref.hops * library.hop_s:.1f} s\t{', '.join(ref.files)}")
    return EXIT_OK


def cmd_reference_remove(args: argparse.Namespace) -> int:
    from streamtag.references import library_lock, load_library

    path = _library_path(args)
    try:
        with library_lock(path):
            library = load_library(path)
            library.remove(args.name)
            library.save(path)
    except LibraryError as e:
        error(str(e))
        return EXIT_USAGE
    except OSError as e:
        error(f"{path}: cannot write ({e.strerror or e})")
        return EXIT_RUNTIME
    print(f"removed {args.name!r}; {len(library.names)} reference(s) left in {path}")
    return EXIT_OK


class _NoBar:
    def __enter__(self) -> Callable[[float], None]:
        return lambda seconds: None

    def __exit__(self, *exc: object) -> None:
        return None


#: The progress bar redraws at most this often [s].
PROGRESS_INTERVAL_S = 0.5


class _TqdmBar:
    """One bar over the seconds of audio of every input (also with --jobs)."""

    def __init__(self, names: list[str], seconds: float | None) -> None:
        from streamtag.progress import progress_bar

        desc = Path(names[0]).name if len(names) == 1 else f"{len(names)} files"
        self._bar = progress_bar(enabled=True, total=None if seconds is None else round(seconds, 1),
                                 desc=desc, unit="s", unit_scale=False,
                                 mininterval=PROGRESS_INTERVAL_S)

    def __enter__(self) -> Callable[[float], None]:
        def update(seconds: float) -> None:
            self._bar.update(seconds)

        return update

    def __exit__(self, *exc: object) -> None:
        self._bar.refresh()  # the last update may have come within mininterval of the one before
        self._bar.close()


def _progress_factory(mode: str) -> Callable[[list[str], float | None], _NoBar | _TqdmBar]:
    """A progress bar over seconds of audio, only when stderr is a terminal and there is more
    than 30 s (or a pipe of unknown length) to analyse, or when forced."""
    def make(names: list[str], seconds: float | None) -> _NoBar | _TqdmBar:
        long = seconds is None or seconds > 30
        show = mode == "on" or (mode == "auto" and sys.stderr.isatty() and long)
        return _TqdmBar(names, seconds) if show else _NoBar()

    return make


# -- run / devices / monitor ---------------------------------------------------------------------
def _parse_osc_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"--osc {text!r}: expected HOST:PORT with PORT in 1..65535")
    return host, int(port)


def config_with_flags(args: argparse.Namespace) -> Config:
    """The config file (or defaults) with the command-line flags applied on top."""
    from dataclasses import replace
    from pathlib import Path as _Path

    from streamtag.config import OscTarget, config_from_dict, load_config

    cfg = load_config(args.config)
    inp = cfg.input
    if args.input is not None:
        if _Path(args.input).exists() and _Path(args.input).is_file():
            inp = replace(inp, file=args.input, device=None)
        else:
            dev: int | str = int(args.input) if args.input.isdigit() else args.input
            inp = replace(inp, device=dev, file=None)
    if args.no_realtime:
        inp = replace(inp, realtime=False)
    osc = cfg.outputs.osc
    if args.osc:
        osc = replace(osc, targets=[OscTarget(*_parse_osc_target(t)) for t in args.osc])
    zmq_cfg = cfg.outputs.zmq
    if args.zmq:
        zmq_cfg = replace(zmq_cfg, endpoint=args.zmq)
    logging_cfg = cfg.logging
    if args.log_format:
        logging_cfg = replace(logging_cfg, format=args.log_format)
    cfg = replace(cfg, input=inp, outputs=replace(cfg.outputs, osc=osc, zmq=zmq_cfg),
                  logging=logging_cfg)
    # Flags go through the same validation as the file.
    from dataclasses import asdict

    return config_from_dict(asdict(cfg))


def _stop_before_running(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM before the daemon's own handler exists (loading torch and the model
    takes seconds): nothing runs yet, so stopping is leaving, cleanly (exit 0, not 143)."""
    sys.stderr.flush()
    os._exit(EXIT_OK)


def cmd_run(args: argparse.Namespace) -> int:
    # First thing: a service manager's SIGTERM during start-up must end us cleanly.
    signal.signal(signal.SIGTERM, _stop_before_running)
    signal.signal(signal.SIGINT, _stop_before_running)
    if hasattr(signal, "SIGUSR1"):  # every thread's stack to stderr, even with one stuck in C
        import faulthandler

        faulthandler.register(signal.SIGUSR1, all_threads=True)
    cfg = config_with_flags(args)  # a bad config is named before seconds of loading torch
    from streamtag.daemon import Daemon, install_signal_handlers
    from streamtag.errors import DeviceError
    from streamtag.logs import log_to_stderr

    log_to_stderr(cfg.logging.level, "json" if cfg.logging.format == "json" else "text")
    try:
        daemon = Daemon(cfg, config_path=args.config, checkpoint_override=args.checkpoint)
    except (CheckpointError, AudioError, LibraryError) as e:
        error(str(e))
        return EXIT_USAGE
    except DeviceError as e:
        error(str(e))
        return EXIT_RUNTIME
    install_signal_handlers(daemon)
    code = daemon.run()
    # Every socket and the audio are closed by now. Tearing down torch's interpreter state can
    # take most of a second, and a service manager expects SIGTERM to end the process fast.
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_devices(args: argparse.Namespace) -> int:
    from streamtag.audio.devices import list_devices
    from streamtag.errors import DeviceError

    try:
        devices = list_devices()
    except DeviceError as e:
        error(str(e))
        return EXIT_RUNTIME
    inputs = [d for d in devices if d.max_input_channels > 0]
    if not inputs:
        error("no input devices found. Use `--input FILE`, or start a JACK server "
             "(`jackd -d dummy` on a machine without a sound card) and run this again.")
        return EXIT_RUNTIME
    print(f"{'index':>5}  {'channels':>8}  {'rate [Hz]':>9}  name (host API)")
    for d in inputs:
        print(f"{d.index:>5}  {d.max_input_channels:>8}  {d.default_sample_rate_hz:>9.0f}  "
              f"{d.name} ({d.host_api})")
    return EXIT_OK


def cmd_monitor(args: argparse.Namespace) -> int:
    from streamtag.monitor import monitor

    return monitor(args.zmq)


def cmd_service(args: argparse.Namespace) -> int:
    from streamtag import service

    kind = args.kind or service.this_kind()
    if args.action == "install":
        if args.config is not None:
            from streamtag.config import load_config

            load_config(args.config)  # a config that cannot load would restart forever
        path, svc, notes = service.install(kind, args.config, args.now)
        print(f"wrote {path}\nruns: {' '.join(svc.argv())}")
    elif args.action == "uninstall":
        path, existed, notes = service.uninstall(kind)
        print(f"removed {path}" if existed else f"not installed ({path} does not exist)")
    else:
        ok, notes = service.status(kind)
        print("\n".join(notes))
        return EXIT_OK if ok else EXIT_RUNTIME
    for note in notes:
        print(note)
    return EXIT_OK


# -- main ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="streamtag", description="Real-time audio analysis for performers.")
    p.add_argument("--version", action="version", version=f"streamtag {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    a = sub.add_parser("analyze", help="analyze audio files offline, one estimate per hop")
    a.add_argument("files", nargs="+", metavar="FILE", help="WAV, FLAC, OGG or MP3 files; "
                   "- reads standard input (a WAV stream, or raw PCM with --rate/--channels)")
    a.add_argument("--checkpoint", metavar="F", help="model checkpoint (.safetensors); "
                   "default: the bundled model")
    a.add_argument("--config", metavar="F", help="YAML config (analysis.silence_db, …)")
    a.add_argument("--format", choices=("jsonl", "csv"), default="jsonl",
                   help="output format (default jsonl: one JSON record per line)")
    a.add_argument("--out", metavar="F", help="write here instead of standard output")
    a.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on stderr (auto: on for files > 30 s on a terminal)")
    a.add_argument("--vectors", action="store_true",
                   help="keep the whole embedding vector in each record (embedding.vector)")
    a.add_argument("--jobs", type=int, metavar="N", help="use N cores (default: all): N "
                   "files at a time in separate processes, output as one by one; one file's "
                   "decoding and model side by side. 1: one core, one thread")
    a.add_argument("--rate", type=int, metavar="HZ", help="sample rate [Hz] of raw PCM on "
                   "standard input (-); a WAV stream's header says it")
    a.add_argument("--channels", type=int, metavar="N", help="channels of raw PCM on standard "
                   "input (interleaved)")
    a.add_argument("--sample-format", choices=SAMPLE_FORMATS, default="f32le",
                   help="raw PCM on standard input: f32le (float32 in [-1, 1], default), s16le, "
                   "s24le or s32le (signed integers), little-endian, interleaved")
    a.set_defaults(func=cmd_analyze)

    ref = sub.add_parser("reference", help="the reference library: recordings to recognise "
                         "(add, list, remove)")
    ref_sub = ref.add_subparsers(dest="reference_command", metavar="ACTION",
                                 parser_class=_Parser, required=True)
    lib_help = ("library file (default: references.safetensors in the user's data folder: "
                "~/.local/share/streamtag on Linux, ~/Library/Application Support/streamtag on "
                "macOS)")
    ra = ref_sub.add_parser("add", help="analyse recordings and store their match vectors "
                            "under a name")
    ra.add_argument("name", metavar="NAME", help="reference name, e.g. intro")
    ra.add_argument("files", nargs="+", metavar="FILE", help="WAV, FLAC, OGG or MP3 files")
    ra.add_argument("--library", metavar="F", help=lib_help)
    ra.add_argument("--checkpoint", metavar="F", help="model checkpoint with an embedding head "
                    "(default: model.checkpoint of --config, else the bundled model)")
    ra.add_argument("--config", metavar="F", help="YAML config (analysis.silence_db, "
                    "model.checkpoint)")
    ra.set_defaults(func=cmd_reference_add)
    rl = ref_sub.add_parser("list", help="list the references in a library")
    rl.add_argument("--library", metavar="F", help=lib_help)
    rl.set_defaults(func=cmd_reference_list)
    rr = ref_sub.add_parser("remove", help="remove a reference by name")
    rr.add_argument("name", metavar="NAME")
    rr.add_argument("--library", metavar="F", help=lib_help)
    rr.set_defaults(func=cmd_reference_remove)

    r = sub.add_parser("run", help="the live daemon: capture, analyse, publish over OSC/ZeroMQ")
    r.add_argument("--config", metavar="F", help="YAML config (default: built-in defaults, "
                   "documented in configs/default.yaml)")
    r.add_argument("--input", metavar="DEV|FILE", help="input device (index or name "
                   "substring), an audio file, or synthetic:sine|noise|click|silence")
    r.add_argument("--checkpoint", metavar="F", help="model checkpoint (default: bundled)")
    r.add_argument("--osc", metavar="HOST:PORT", action="append",
                   help="OSC target (repeat for several; replaces the config's targets)")
    r.add_argument("--zmq", metavar="ENDPOINT", help="ZeroMQ endpoint to bind, e.g. "
                   "tcp://127.0.0.1:5556")
    r.add_argument("--no-realtime", action="store_true",
                   help="with a file input: analyse as fast as possible instead of in real time")
    r.add_argument("--log-format", choices=("human", "json"), help="log lines (default human)")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("devices", help="list audio input devices")
    d.set_defaults(func=cmd_devices)

    m = sub.add_parser("monitor", help="live terminal view of a running daemon")
    m.add_argument("--zmq", metavar="ENDPOINT", default="tcp://127.0.0.1:5556",
                   help="the daemon's ZeroMQ endpoint (default tcp://127.0.0.1:5556)")
    m.set_defaults(func=cmd_monitor)

    sv = sub.add_parser("service", help="run the daemon at login: a systemd user unit (Linux) "
                        "or a launchd agent (macOS)")
    sv.add_argument("action", choices=("install", "uninstall", "status"),
                    help="install: write the service file (start it only with --now); "
                    "uninstall: stop, disable and remove it; status: what is installed")
    sv.add_argument("--config", metavar="F", help="config the service runs with (install; "
                    "default: streamtag.yaml in the user's config folder if it exists, e.g. "
                    "~/.config/streamtag/streamtag.yaml)")
    sv.add_argument("--now", action="store_true", help="install: also enable and start it "
                    "(systemctl --user enable --now / launchctl bootstrap)")
    sv.add_argument("--kind", choices=("systemd", "launchd"), help="service manager (default: "
                    "this system's)")
    sv.set_defaults(func=cmd_service)

    c = sub.add_parser("check-config", help="validate a config file (exit 0, or 2 naming "
                       "every problem)")
    c.add_argument("file", metavar="F")
    c.set_defaults(func=cmd_check_config)

    from streamtag.train.cli import add_commands  # train, evaluate, corpus build

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
