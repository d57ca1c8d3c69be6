"""Self-metrics and health: what the agent reports about itself.

ebpf_exporter's own families keep their names and labels, so its dashboards and alerts
work unchanged: ``ebpf_exporter_enabled_configs{name}``,
``ebpf_exporter_ebpf_program_info{config,id,program,tag}``,
``ebpf_exporter_ebpf_program_attached{id}``, ``ebpf_exporter_decoder_errors_total{config}``,
and, only while BPF run-time stats are on (they cost a little per program run),
``ebpf_exporter_ebpf_program_run_time_seconds{id}`` and ``..._run_count_total{id}``.

tracekit adds (same prefix, new names): ``ebpf_exporter_config_up{config}`` (0 for a config
that failed to load), ``ebpf_exporter_config_load_seconds{config}``,
``ebpf_exporter_config_errors_total{config}`` (failed loads and attaches, reloads included),
``ebpf_exporter_lost_events_total{config}``,
``ebpf_exporter_metric_series_dropped_total{config,metric}`` (label sets over the
cardinality bound), ``ebpf_exporter_scrape_duration_seconds`` (the previous scrape); and
prometheus-client's ``process_*`` families (RSS, open fds, CPU).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("tracekit.agent")


def self_families(agent: Any) -> list[Any]:
    """The self-metric families for the agent's current probes."""
    from prometheus_client.core import Metric

    def fam(name: str, help: str, typ: str = "gauge") -> Any:
        return Metric(name, help, typ)

    enabled = fam("ebpf_exporter_enabled_configs", "The set of enabled configs")
    up = fam("ebpf_exporter_config_up", "Whether the config's object is loaded (0: it failed, see the logs)")
    load_s = fam("ebpf_exporter_config_load_seconds", "Time taken to open, load and attach the config's object")
    errs = fam("ebpf_exporter_config_errors_total", "Failed loads and attaches of the config", "counter")
    dec = fam("ebpf_exporter_decoder_errors_total", "How many times has decoders encountered errors", "counter")
    lost = fam("ebpf_exporter_lost_events_total", "Events the config's probes could not deliver", "counter")
    dropped = fam("ebpf_exporter_metric_series_dropped_total",
                  "Label sets left out of scrapes by the per-metric series limit", "counter")
    info = fam("ebpf_exporter_ebpf_program_info", "Info about ebpf programs")
    attached = fam("ebpf_exporter_ebpf_program_attached", "Whether a program is attached")
    run_time = fam("ebpf_exporter_ebpf_program_run_time_seconds", "How long has the program been executing")
    run_cnt = fam("ebpf_exporter_ebpf_program_run_count_total", "How many times has the program been executed",
                  "counter")
    stats_on = agent.bpf_stats_active()
    for rc in agent.probes.values():
        c = rc.config.name
        up.add_sample(up.name, {"config": c}, 1.0 if rc.up else 0.0)
        errs.add_sample(errs.name, {"config": c}, float(rc.errors))
        dec.add_sample(dec.name, {"config": c}, float(rc.decoder_errors()))
        if not rc.up:
            continue
        enabled.add_sample(enabled.name, {"name": c}, 1.0)
        load_s.add_sample(load_s.name, {"config": c}, rc.load_seconds)
        lost.add_sample(lost.name, {"config": c}, float(rc.lost()))
        for r in rc.readers:
            dropped.add_sample(dropped.name, {"config": c, "metric": r.metric.name}, float(r.stats.series_dropped))
        for p in rc.programs:
            pid = str(p.id)
            info.add_sample(info.name, {"config": c, "id": pid, "program": p.name, "tag": p.tag}, 1.0)
            attached.add_sample(attached.name, {"id": pid}, 1.0 if p.attached else 0.0)
            if stats_on:
                rt_ns, cnt = rc.run_stats(p)
                run_time.add_sample(run_time.name, {"id": pid}, rt_ns / 1e9)
                run_cnt.add_sample(run_cnt.name, {"id": pid}, float(cnt))
    sp_out = fam("ebpf_exporter_spans_exported_total", "Spans of tracing.spans sent by OTLP", "counter")
    sp_drop = fam("ebpf_exporter_spans_dropped_total", "Spans of tracing.spans not sent (no OTLP endpoint, "
                  "or the push failed)", "counter")
    for rc in agent.probes.values():
        if rc.span_readers:
            lb = {"config": rc.config.name}
            sp_out.add_sample(sp_out.name, lb, float(sum(r.exported for r in rc.span_readers)))
            sp_drop.add_sample(sp_drop.name, lb, float(sum(r.dropped for r in rc.span_readers)))
    scrape = fam("ebpf_exporter_scrape_duration_seconds", "Duration of the previous scrape of the maps")
    scrape.add_sample(scrape.name, {}, agent.last_scrape_seconds)
    return [enabled, up, load_s, errs, dec, lost, dropped, info, attached, run_time, run_cnt, sp_out, sp_drop, scrape]


def health(agent: Any) -> tuple[int, bytes]:
    """``/healthz``: 200 when every config is up (503 otherwise), and a JSON body saying
    which probes are up, with their programs' attach state and the last error."""
    body: dict[str, Any] = {"status": "ok", "configs": {}}
    bad = False
    for name, rc in sorted(agent.probes.items()):
        bad |= not rc.up
        body["configs"][name] = {
            "up": rc.up,
            "error": rc.last_error,
            "programs": {p.name: {"id": p.id, "attached": p.attached} for p in rc.programs},
        }
    if bad:
        body["status"] = "degraded"
    return (503 if bad else 200), (json.dumps(body, sort_keys=True) + "\n").encode()


# --- structured logs -------------------------------------------------------------------------------


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's ``extra``
    fields (config, program, error...)."""

    _STD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        d: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in self._STD and not k.startswith("_"):
                if isinstance(v, (list, tuple)):
                    d[k] = [x if isinstance(x, (str, int, float, bool)) else str(x) for x in v]
                else:
                    d[k] = v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d)


def setup_logging(*, json_logs: bool = False, level: int = logging.INFO,
                  handlers: Sequence[logging.Handler] | None = None) -> None:
    """Configure the ``tracekit`` loggers for the agent command: one line per event."""
    h = logging.StreamHandler()
    h.setFormatter(JSONFormatter() if json_logs else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("tracekit")
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers or [h]:
        root.addHandler(handler)
    root.setLevel(level)


def process_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1
