"""``python -m runners.python --script PATH | --builtin NAME | --module NAME``: run a pipeline.

Exit codes (``ExitCode``): 0 stopped or finished, 1 failure (e.g. the output cannot be bound),
2 processing error with ``abort_on_error``, 3 initial configuration refused, 4 user code not
loadable.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType

import zmq

from supervisor.contract import (
    ContractEnv,
    ContractLogHandler,
    EnvVar,
    ExitCode,
    ProgramChannels,
)

from .config import ConfigRefused, Configurator
from .extension import ExtensionError
from .loader import load
from .parallel import ParallelError
from .runner import Runner

log = logging.getLogger("pipevisor.runner")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runners.python",
        description="Run a Python pipeline (process_image, process or generate) under pipevisor.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--script", help="path of a Python file, loaded as a fresh module")
    target.add_argument(
        "--builtin", help="name of a builtin pipeline (python -m builtin_pipelines lists them)"
    )
    target.add_argument("--module", help="dotted name of an importable module")
    target.add_argument(
        "--extension", help="path of a C extension: a .c compiled on first use, or a .so"
    )
    return parser.parse_args(argv)


def _read_env(target: str) -> ContractEnv:
    if EnvVar.INSTANCE not in os.environ:  # standalone: no supervisor, no CONFIG, no LOG
        return ContractEnv(instance=Path(target).stem or target, run=0)
    return ContractEnv.from_environ()


def _setup_logging(channels: ProgramChannels) -> logging.Handler:
    """Route the program's logging to LOG, or warnings and worse to stderr without LOG."""
    if channels.has_log:
        handler: logging.Handler = ContractLogHandler(channels)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def _run(
    args: argparse.Namespace,
    env: ContractEnv,
    context: zmq.Context[zmq.Socket[bytes]],
    channels: ProgramChannels,
) -> int:
    update = channels.hello()
    config, seq = (update.config, update.seq) if update is not None else (env.config, None)
    target = args.script or args.builtin or args.module or args.extension
    try:
        code = load(
            script=args.script, builtin=args.builtin, module=args.module, extension=args.extension
        )
    except ExtensionError as exc:  # the compiler's or the loader's words say it all
        log.error("%s", exc)
        return ExitCode.LOAD_ERROR
    except (Exception, SystemExit) as exc:
        log.exception("cannot load %s: %s: %s", target, type(exc).__name__, exc)
        if channels.has_log:  # the stderr handler has printed it already otherwise
            traceback.print_exc()
        return ExitCode.LOAD_ERROR
    configurator = Configurator(code)
    try:
        configurator.apply(config)
    except ConfigRefused as exc:
        log.error("initial configuration refused: %s", exc)
        if seq is not None:
            channels.error(seq, str(exc))
        return ExitCode.CONFIG_ERROR
    if seq is not None:
        channels.ack(seq)

    runner = Runner(env, context, channels, configurator)

    def stop(signum: int, frame: FrameType | None) -> None:
        runner.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        try:
            runner.open()
        except zmq.ZMQError as exc:
            log.error("cannot bind the output to %s: %s", env.output_url, exc)
            return ExitCode.FAILURE
        except ParallelError as exc:
            parallel = configurator.options.parallel
            log.error("cannot start the workers of parallel=%s: %s", parallel, exc, exc_info=exc)
            return ExitCode.FAILURE
        log.info("running %s (%s pipeline)", target, code.kind)
        return runner.run()
    finally:
        runner.close()


# DATA and OUTPUT each get an I/O thread: a camera frame is received and the previous result
# sent at the same time, on two cores. With one thread both copies of every 11 MB frame went
# through one core, and a 2560x2160 camera pipeline at 100 Hz lost frames (bench/README.md).
_IO_THREADS = 2


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline named on the command line; returns the exit code."""
    args = _parse_args(argv)
    target = args.script or args.builtin or args.module or args.extension
    # A crash in native code (a C extension's SIGSEGV) prints the Python stack on stderr, which
    # the supervisor keeps in the instance's log next to the signal it reports.
    faulthandler.enable()
    try:
        env = _read_env(target)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    context = zmq.Context(io_threads=_IO_THREADS)
    channels = ProgramChannels(env, context, program=f"pipevisor python runner: {target}")
    handler = _setup_logging(channels)
    try:
        return _run(args, env, context, channels)
    finally:
        logging.getLogger().removeHandler(handler)
        channels.close()
        context.term()


if __name__ == "__main__":
    sys.exit(main())
