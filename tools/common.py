"""What every bcc-style tool shares: argument parsing helpers, the run loop, output."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio

import tracekit


def duration(text: str) -> float:
    """``-d`` values: seconds, optionally with a unit (``10``, ``1.5s``, ``2m``, ``1h``)."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip()
    mult = units.get(t[-1:], 1)
    if t[-1:] in units:
        t = t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 10, 1.5s, 2m)") from None
    if v <= 0 or math.isinf(v):
        raise argparse.ArgumentTypeError("duration must be positive")
    return v


def regex(text: str) -> re.Pattern[str]:
    """``-n``/``-l`` values: a Python regular expression, checked while parsing options."""
    try:
        return re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"invalid regular expression {text!r}: {e}") from None


def resolve_uid(p: argparse.ArgumentParser, value: str | None) -> int | None:
    """``-u`` values: a numeric UID or a user name."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    import pwd

    try:
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        p.error(f"no such user: {value}")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--duration", type=duration, help="trace for this many seconds, then exit")
    p.add_argument("--json", action="store_true", help="print one JSON object per event instead of columns")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="show the verifier log and debug output on errors")


def fail(msg: str) -> int:
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    return 1


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, probe: tracekit.Probe, header: Callable[[], str | None],
        row: Callable[[Any], str | None], to_json: Callable[[Any], dict]) -> int:
    """Start ``probe``, print rows until Ctrl-C, ``-d`` or end; a clean exit either way."""
    # From here on Ctrl-C and SIGTERM unwind through the event loop, so the probe is
    # detached and closed on the way out (see tracekit_tools/__init__.py for start-up).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass

    # Lost events are reported, never silent (issue 10): a line per second at most while
    # they happen, and the total at exit.
    from tracekit.events.lost import LostReporter

    lost = LostReporter(lambda: probe.lost)

    async def main() -> None:
        async with probe:
            # -d counts tracing time: it starts once the programs are attached, not while
            # loading (which takes seconds on slow machines).
            with anyio.move_on_after(args.duration if args.duration else math.inf):
                if not args.json:
                    h = header()
                    if h is not None:
                        print(h)
                async for ev in probe:
                    lost.tick()
                    if args.json:
                        print(json.dumps(to_json(ev)))
                    else:
                        line = row(ev)
                        if line is not None:
                            print(line)

    try:
        anyio.run(main, backend=args.backend)
    except KeyboardInterrupt:
        lost.finish()
        return 0
    except BrokenPipeError:
        # e.g. `tracekit-execsnoop | head`: stop quietly, as the BCC tools do
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - swallow the final flush
        except OSError:
            pass
        return 0
    except tracekit.PermissionDeniedError as e:
        # the error already names the missing privilege (tracekit.kernel.syscalls.diagnose): say it once
        return fail(str(e) if "CAP_" in str(e) or "uid " in str(e) else
                    f"{e}\n(run as root: tracing needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)")
    except tracekit.VerifierError as e:
        if args.verbose:
            return fail(f"{e}\n--- full verifier log ---\n{e.log}")
        return fail(str(e))
    except tracekit.TracekitError as e:
        return fail(str(e))
    lost.finish()
    return 0


class Clock:
    """TIME column helpers: wall-clock HH:MM:SS and seconds since the tool started."""

    def __init__(self) -> None:
        self.start_mono = time.monotonic_ns()
        # ktime (bpf_ktime_get_ns) is CLOCK_MONOTONIC
        self.start_ktime: int | None = None

    @staticmethod
    def hms() -> str:
        return time.strftime("%H:%M:%S")

    def since_start(self, ktime_ns: int | None = None) -> float:
        if ktime_ns:
            return (ktime_ns - self.start_mono) / 1e9
        return (time.monotonic_ns() - self.start_mono) / 1e9
