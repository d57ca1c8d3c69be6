"""tracekit-tcpretrans: TCP retransmissions, like BCC's tcpretrans (there is no libbpf-tools one).

Columns: TIME PID IP LADDR:LPORT T> RADDR:RPORT STATE [SEQ]
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

from tracekit.probes._inet import TCP_STATES, addr, ip_version
from tracekit.probes.tcpretrans import TLP, Flow, Retransmit, TcpRetrans

from .common import Clock, HelpFormatter, add_common, run, run_summary

EPILOG = """\
examples:
  tracekit-tcpretrans           # trace TCP retransmits
  tracekit-tcpretrans -s        # also show the TCP sequence number
  tracekit-tcpretrans -l        # include TLP attempts
  tracekit-tcpretrans -4        # trace IPv4 family only
  tracekit-tcpretrans -6        # trace IPv6 family only
  tracekit-tcpretrans -c        # count retransmits per flow

Options and columns are BCC's.  Hooks: tracepoint tcp:tcp_retransmit_skb (4.15+); -l adds
kprobe tcp_send_loss_probe (no tracepoint exists for tail loss probes), so it fails with
the reason on kernels without kprobes.  PID is whoever was running when the kernel
retransmitted (usually 0: a timer).  The banner goes to stderr, rows to stdout.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tracekit-tcpretrans", description="Trace TCP retransmits",
                                epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("-s", "--sequence", action="store_true", help="display TCP sequence numbers")
    p.add_argument("-l", "--lossprobe", action="store_true", help="include tail loss probe attempts")
    p.add_argument("-c", "--count", action="store_true", help="count occurred retransmits per flow")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    add_common(p)
    return p.parse_args(argv)


def state_name(state: int) -> str:
    return TCP_STATES.get(state, str(state))


def ends(ev: Retransmit) -> tuple[str, str]:
    return f"{addr(ev.af, ev.saddr)}:{ev.lport}", f"{addr(ev.af, ev.daddr)}:{ev.dport}"


def to_json(ev: Retransmit) -> dict[str, Any]:
    return {"ts": ev.ts, "pid": ev.pid, "ip": ip_version(ev.af), "laddr": addr(ev.af, ev.saddr), "lport": ev.lport,
            "raddr": addr(ev.af, ev.daddr), "rport": ev.dport, "type": "L" if ev.type == TLP else "R",
            "state": state_name(ev.state), "seq": ev.seq}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    family = socket.AF_INET if args.ipv4 else socket.AF_INET6 if args.ipv6 else 0
    banner = "Tracing retransmits ... Hit Ctrl-C to end"
    if args.count:
        # BCC counts in the kernel: a hash per flow, read (and reset) once at the end
        counter = TcpRetrans(targ_family=int(family), lossprobe=args.lossprobe, count_mode=True)
        once = argparse.Namespace(**{**vars(args), "interval": None, "count": None, "timestamp": False})
        return run_summary(once, counter, lambda _: counter.pop_counts(), counts_text, counts_json, banner=banner)

    probe = TcpRetrans(targ_family=int(family), lossprobe=args.lossprobe)
    clock = Clock()

    def header() -> str:
        print(banner, file=sys.stderr)
        h = f"{'TIME':<8} {'PID':<7} {'IP':<2} {'LADDR:LPORT':<20} {'T':>1}> {'RADDR:RPORT':<20}"
        return h + (f" {'STATE':<12} {'SEQ':<10}" if args.sequence else f" {'STATE':<4}")

    def row(ev: Retransmit) -> str:
        local, remote = ends(ev)
        line = f"{clock.hms():<8} {ev.pid:<7d} {ip_version(ev.af):<2d} {local:<20} " \
               f"{'L' if ev.type == TLP else 'R':>1}> {remote:<20}"
        return line + (f" {state_name(ev.state):<12} {ev.seq}" if args.sequence else f" {state_name(ev.state)}")

    return run(args, probe, header, row, to_json)


def _flows(data: list[tuple[Flow, int]]) -> list[tuple[int, str, int, str, int, int]]:
    # BCC: ascending by count
    rows = [(k.af, addr(k.af, k.saddr), k.lport, addr(k.af, k.daddr), k.dport, n) for k, n in data]
    return sorted(rows, key=lambda r: r[5])


def counts_text(data: list[tuple[Flow, int]]) -> str:
    lines = [f"{'LADDR:LPORT':<25} {'RADDR:RPORT':<25} {'RETRANSMITS':<10}"]
    for _af, s, lport, d, dport, n in _flows(data):
        lines.append(f"{f'[{s}]#{lport}':<20} <-> {f'[{d}]#{dport}':<20} {n:>10d}")
    return "\n".join(lines)


def counts_json(data: list[tuple[Flow, int]]) -> dict[str, Any]:
    return {"flows": [{"ip": ip_version(af), "laddr": s, "lport": lport, "raddr": d, "rport": dport,
                       "retransmits": n} for af, s, lport, d, dport, n in _flows(data)]}


if __name__ == "__main__":
    raise SystemExit(main())
