"""tracekit-oomkill: trace the OOM killer, like BCC's and libbpf-tools' oomkill.

One line per kill: the triggering process, the victim, the pages considered and the load
average at the time.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from tracekit.probes.oomkill import Kill, OOMKill

from .common import HelpFormatter, add_common, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tracekit-oomkill",
        description="Trace the Linux out-of-memory (OOM) killer",
        epilog="Output is BCC's oomkill (libbpf-tools' is the same line). Hook: kprobe oom_kill_process,\n"
        "else the oom:mark_victim tracepoint (kernels without kprobes), which cannot see the\n"
        "pages the OOM killer weighed: the ', N pages' part is then left out.\n\n"
        "examples:\n"
        "  tracekit-oomkill            # trace OOM kills until Ctrl-C\n"
        "  tracekit-oomkill --json     # one JSON object per kill",
        formatter_class=HelpFormatter,
    )
    add_common(p)
    return p.parse_args(argv)


def loadavg() -> str | None:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return None


def line(ev: Kill) -> str:
    text = (f'{time.strftime("%H:%M:%S")} Triggered by PID {ev.fpid} ("{ev.fcomm}"), '
            f'OOM kill of PID {ev.tpid} ("{ev.tcomm}")')
    if ev.pages:
        text += f", {ev.pages} pages"
    la = loadavg()
    return text + (f", loadavg: {la}" if la is not None else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = OOMKill()

    def to_json(ev: Kill) -> dict[str, Any]:
        return {"time": time.strftime("%H:%M:%S"), "trigger_pid": ev.fpid, "trigger_comm": ev.fcomm,
                "victim_pid": ev.tpid, "victim_comm": ev.tcomm, "pages": ev.pages or None, "loadavg": loadavg()}

    return run(args, probe, lambda: "Tracing OOM kills... Ctrl-C to stop.", line, to_json)


if __name__ == "__main__":
    raise SystemExit(main())
