"""``tracekit agent --config DIR|FILE [--listen ADDR:PORT] [--otlp URL] [--strict]``.

Exit status: 0 after SIGTERM/SIGINT (everything detached), 1 when ``--strict`` and a
config fails, 2 on bad options.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from tracekit.errors import TracekitError


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[v6]:PORT`` or ``:PORT`` (all addresses)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen {text!r}: give ADDR:PORT, e.g. 127.0.0.1:9435")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("agent", help="run ebpf_exporter-format configs, serve Prometheus metrics, push OTLP",
                       description="Load every config (NAME.yaml next to NAME.bpf.o) of DIR, or one FILE, "
                                   "export their maps on /metrics and /healthz. SIGHUP reloads the configs; "
                                   "SIGTERM/SIGINT stop, detaching everything.")
    p.add_argument("--config", required=True, metavar="DIR|FILE", help="config directory or one YAML file")
    p.add_argument("--names", metavar="A,B", help="only these configs of DIR (ebpf_exporter's --config.names)")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 9435), metavar="ADDR:PORT",
                   help="HTTP address for /metrics and /healthz (default 127.0.0.1:9435)")
    p.add_argument("--otlp", metavar="URL", help="push metrics by OTLP/HTTP to URL, e.g. "
                   "http://127.0.0.1:4318/v1/metrics (needs tracekit[otlp])")
    p.add_argument("--otlp-traces", metavar="URL", help="where tracing.spans go (default: beside --otlp, "
                   ".../v1/traces)")
    p.add_argument("--otlp-interval", type=float, default=10.0, metavar="SECONDS", help="OTLP push interval")
    p.add_argument("--strict", action="store_true", help="a config that fails to load or attach is fatal")
    p.add_argument("--max-series", type=int, default=10_000, metavar="N",
                   help="series kept per metric and scrape (the rest are counted as dropped)")
    p.add_argument("--bpf-stats", action="store_true",
                   help="count programs' run time and runs (BPF_ENABLE_STATS; costs a little per run)")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    p.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio",
                   help="the event loop anyio runs the agent on (trio needs the trio package)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import anyio

    from tracekit.agent.daemon import Agent
    from tracekit.agent.health import setup_logging

    setup_logging(json_logs=args.log_json, level=logging.DEBUG if args.verbose else logging.INFO)
    agent = Agent(config_path=args.config, names=args.names.split(",") if args.names else None,
                  listen=args.listen, otlp_url=args.otlp, otlp_interval=args.otlp_interval,
                  otlp_traces_url=args.otlp_traces, strict=args.strict,
                  max_series=args.max_series, bpf_stats=args.bpf_stats)
    try:
        anyio.run(agent.run, backend=args.backend)
    except TracekitError as e:
        logging.getLogger("tracekit.agent").error("agent stopped: %s", e)
        return 1
    except BaseExceptionGroup as eg:
        # raised from a task (e.g. a --strict failure during a SIGHUP reload)
        errors = eg.subgroup(TracekitError)
        if errors is None:
            raise
        for err in errors.exceptions:
            logging.getLogger("tracekit.agent").error("agent stopped: %s", err)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
