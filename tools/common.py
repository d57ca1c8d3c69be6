"""What every bcc-style tool shares: argument parsing helpers, the run loop, output."""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import tracekit

# anyio and json are imported where they are used: the default (sync) loop needs neither,
# and anyio alone is ~11 ms of a tool's ~50 ms start (issue 13)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's RawDescriptionHelpFormatter, with the terminal width from os, not shutil:
    argparse builds a formatter for every add_argument(), and its default width pulls in
    shutil (and bz2/lzma/zlib with it, ~1.5 ms of every tool's start)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            try:
                width = int(os.environ["COLUMNS"])
            except (KeyError, ValueError):
                try:
                    width = os.get_terminal_size(sys.__stdout__.fileno() if sys.__stdout__ else 1).columns
                except (OSError, ValueError):
                    width = 80
            width -= 2  # as argparse does
        super().__init__(prog, indent_increment, max_help_position, width)


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
    # sync (default): a poll() loop with no event loop to import or run (issue 13: ~10 MB
    # less RSS than asyncio+ssl, and the cheapest wake-up); asyncio/trio for testing those
    p.add_argument("--backend", choices=["sync", "asyncio", "trio"], default="sync", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="show the verifier log and debug output on errors")


def fail(msg: str) -> int:
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    return 1


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _isatty(f: Any) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _buffer_stdout() -> None:
    """Block-buffer a non-terminal stdout even under PYTHONUNBUFFERED/-u (which leave it
    with no buffer at all: a write() per row): the tool flushes it itself, before every
    wait of its reader and at exit, so no row waits longer than the next quiet moment."""
    out = sys.stdout
    if not getattr(out, "write_through", False) and not isinstance(getattr(out, "buffer", None), io.FileIO):
        return
    try:
        fd = out.fileno()
        out.flush()
        sys.stdout = open(fd, "w", buffering=1 << 16, encoding=out.encoding, errors=out.errors,  # noqa: SIM115
                          closefd=False)
    except (AttributeError, ValueError, OSError):
        pass


async def _singles(events: Any) -> Any:
    async for ev in events:
        yield [ev]


def _flush_stdout() -> None:
    # sys.stdout looked up at call time: run() swaps it for devnull after a broken pipe
    sys.stdout.flush()


#: Wake-up batching of the event tools (RecordStream.batch_latency): when records come
#: closer together than this, they are handed over (and printed) in batches at most this
#: old, one wake-up per batch.  In an exec storm (~1,000 records/s) that cuts
#: tracekit-execsnoop's CPU per event from ~50 us to ~12 us, about the C front end's
#: (bench/bench_tools.py, exec; 10 ms gave ~18 us).  An isolated event still prints at
#: once, and 20 ms is below what a person watching a terminal can see.
BATCH_LATENCY = 0.02


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
    # A terminal gets every row as it happens; a file or pipe gets block-buffered output,
    # flushed whenever the reader has handed out all it had (before it waits: at least once
    # per batch) and at exit -- one write() per event cost ~25-35% of the CPU per event in
    # an open() storm (issue 13).
    interactive = _isatty(sys.stdout)
    if interactive:
        try:
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    else:
        _buffer_stdout()

    # Lost events are reported, never silent (issue 10): a line per second at most while
    # they happen, and the total at exit.
    from tracekit import LostReporter

    lost = LostReporter(lambda: probe.lost)
    if args.json:
        from json import dumps

    async def main() -> None:
        import anyio

        async with probe:
            # -d counts tracing time: it starts once the programs are attached, not while
            # loading (which takes seconds on slow machines).
            with anyio.move_on_after(args.duration if args.duration else math.inf):
                if not args.json:
                    h = header()
                    if h is not None:
                        print(h, flush=True)  # the "ready" line: programs are attached
                events = probe.events()
                reader = getattr(events, "reader", None)
                if reader is not None:
                    reader.batch_latency = BATCH_LATENCY
                    if not interactive:
                        reader.on_wait = _flush_stdout
                write = sys.stdout.write
                # a batch at a time: one await and one write() call per burst, not per row
                batches = events.batches() if hasattr(events, "batches") else _singles(events)
                async for batch in batches:
                    lost.tick()
                    if args.json:
                        write("".join([dumps(to_json(ev)) + "\n" for ev in batch]))
                    else:
                        write("".join([line + "\n" for line in map(row, batch) if line is not None]))

    def main_sync() -> None:
        probe.start()
        events: Any = None
        try:
            if not args.json:
                h = header()
                if h is not None:
                    print(h, flush=True)  # the "ready" line: programs are attached
            events = probe.events()
            reader = events.reader
            reader.batch_latency = BATCH_LATENCY
            if not interactive:
                reader.on_wait = _flush_stdout
            write = sys.stdout.write
            deadline = time.monotonic() + args.duration if args.duration else None
            limit = reader.batch_size
            while True:
                batch = events.read_available(limit)
                if batch:
                    lost.tick()
                    if args.json:
                        write("".join([dumps(to_json(ev)) + "\n" for ev in batch]))
                    else:
                        write("".join([line + "\n" for line in map(row, batch) if line is not None]))
                    continue
                if reader.closed:
                    break
                if deadline is None:
                    # wake at least once a second so lost events are told while it is quiet
                    reader.wait_sync(1.0)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    reader.wait_sync(min(left, 1.0))
                lost.tick()
        finally:
            if events is not None:
                events.close()
            probe.close()

    try:
        try:
            if args.backend == "sync" and hasattr(probe, "events"):
                main_sync()
            else:
                import anyio

                anyio.run(main, backend=args.backend)
        finally:
            sys.stdout.flush()  # rows still buffered (non-terminal output), before any message
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


# --- summary (interval) tools: biolatency, runqlat, syscount, cachestat, ... ---------------------

#: BCC's default interval: "one report, at Ctrl-C (or at the end of -d)"
FOREVER = 99999999.0


def add_interval(p: argparse.ArgumentParser, default: float | None = None) -> None:
    """The positional ``[interval [count]]`` of BCC's summary tools (``tool 1 10``).

    ``default`` None means BCC's 99999999 s: a single report when the tool is stopped.
    """
    p.add_argument("interval", nargs="?", type=_positive, default=default,
                   help="output interval, in seconds" + (f" (default {default:g})" if default else ""))
    p.add_argument("count", nargs="?", type=_count, default=None, help="number of outputs")


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r} (seconds, e.g. 1 or 0.5)") from None
    if not v > 0 or math.isinf(v):
        raise argparse.ArgumentTypeError("interval must be a positive number of seconds")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r} (a whole number of reports)") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("count must be at least 1")
    return v


def run_summary(args: argparse.Namespace, probe: tracekit.Probe[Any], collect: Callable[[tracekit.Probe[Any]], Any],
                text: Callable[[Any], str], to_json: Callable[[Any], dict[str, Any]], *,
                banner: str | None = None, header: str | None = None, blank_line: bool = True,
                timestamp_line: bool = True, detaching: bool = False,
                on_ready: Callable[[], None] | None = None,
                done: Callable[[], bool] | None = None) -> int:
    """Run a summary tool: start ``probe``, then every ``args.interval`` seconds one report.

    A report is ``collect(probe)`` (read *and clear* the tool's maps: each report covers
    its own interval, as BCC's ``dist.clear()``), printed with ``text(data)``, or with
    ``--json`` as one object per interval: ``{"ts": "YYYY-mm-dd HH:MM:SS", "time": epoch,
    **to_json(data)}``.  Around it, BCC's conventions: ``banner`` once before the first
    interval (on stderr with --json), ``header`` once (cachestat's column line), a blank line
    before each report (``blank_line``), an ``HH:MM:SS`` line when ``args.timestamp``
    (``-T``) and ``timestamp_line``, and ``Detaching...`` at the end when ``detaching``
    (syscount, funccount, cachestat).  ``args.count`` reports end the tool; Ctrl-C,
    SIGTERM, the end of ``-d`` or ``done()`` returning True print a last, partial report
    first.  A closed stdout (``| head``) ends it quietly.

    ``args`` needs ``interval`` (None: one report at the end), ``count``, ``json``,
    ``duration`` and ``verbose`` (see :func:`add_interval` and :func:`add_common`);
    ``timestamp`` is optional.  ``on_ready`` runs once the programs are attached.

    The loop is synchronous on purpose: summary tools only read maps, so a plain sleep that
    Ctrl-C interrupts is all the waiting they need, and the probe stays open (its maps
    readable) for the final report after the interrupt.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    if getattr(args, "verbose", False):
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass
    from tracekit import LostReporter

    lost = LostReporter(lambda: probe.lost)
    interval = args.interval if getattr(args, "interval", None) else FOREVER
    remaining = getattr(args, "count", None)
    as_json = bool(getattr(args, "json", False))
    stamp = bool(getattr(args, "timestamp", False)) and timestamp_line

    def report() -> None:
        data = collect(probe)
        if as_json:
            now = time.time()
            obj = {"ts": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)), "time": round(now, 6)}
            obj.update(to_json(data))
            import json

            print(json.dumps(obj))
            return
        out = "\n" if blank_line else ""
        if stamp:
            out += f"{time.strftime('%H:%M:%S'):<8}\n"
        body = text(data)
        print(out + body, end="" if body.endswith("\n") or not body else "\n")

    def sleep_until(deadline: float) -> bool:
        """Sleep in short slices (lost events and ``done`` are polled); False when stopping."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                return True
            if done is not None and done():
                return False
            time.sleep(min(0.25, deadline - now))
            lost.tick()

    try:
        try:
            probe.start()
            started = time.monotonic()
            end = started + args.duration if getattr(args, "duration", None) else math.inf
            # Ctrl-C right after the banner (a test or a script that waits for it) still
            # gets its final report: the interrupt may land before the loop's own try.
            stopping = False
            try:
                if as_json:
                    # stdout stays pure JSON; the banner still says "attached, tracing now"
                    if banner:
                        print(banner, file=sys.stderr, flush=True)
                else:
                    if banner:
                        print(banner)
                    if header:
                        print(header)
                if on_ready is not None:
                    on_ready()
            except KeyboardInterrupt:
                stopping = True
            next_at = started
            while True:
                next_at += interval
                go_on = not stopping
                try:
                    if go_on:
                        go_on = sleep_until(min(next_at, end))
                except KeyboardInterrupt:
                    go_on = False
                report()
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        break
                if not go_on or time.monotonic() >= end:
                    break
            lost.finish()
            if detaching and not as_json:
                print("Detaching...")
        finally:
            probe.close()
    except KeyboardInterrupt:
        # a second Ctrl-C while reporting: stop now
        return 0
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - swallow the final flush
        except OSError:
            pass
        return 0
    except tracekit.PermissionDeniedError as e:
        return fail(str(e) if "CAP_" in str(e) or "uid " in str(e) else
                    f"{e}\n(run as root: tracing needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)")
    except tracekit.VerifierError as e:
        if getattr(args, "verbose", False):
            return fail(f"{e}\n--- full verifier log ---\n{e.log}")
        return fail(str(e))
    except tracekit.TracekitError as e:
        return fail(str(e))
    return 0


def add_container_filters(p: argparse.ArgumentParser) -> None:
    """``-c/--cgroup PATH`` (libbpf-tools), ``--cgroupmap`` and ``--mntnsmap`` (BCC), for a
    probe that declares them (tracekit.h ``TK_DECLARE_*_FILTER()``)."""
    p.add_argument("-c", "--cgroup", metavar="PATH", help="trace only tasks in this cgroup-v2 directory (or below)")
    p.add_argument("--cgroupmap", metavar="MAP", help="trace only cgroups whose ids are keys of this pinned BPF hash")
    p.add_argument("--mntnsmap", metavar="MAP", help="trace only mount namespaces that are keys of this pinned BPF hash")


def container_filters(args: argparse.Namespace) -> dict[str, str]:
    """The Probe keyword arguments for the options of :func:`add_container_filters`."""
    return {k: v for k in ("cgroup", "cgroupmap", "mntnsmap") if (v := getattr(args, k, None))}

