"""tracekit as an observability agent: ebpf_exporter-compatible configs, Prometheus, OTLP.

* :mod:`.config` — ebpf_exporter's YAML format and the same model in Python
  (:class:`Config`, :class:`Counter`, :class:`Histogram`, :class:`Label`, :class:`Decoder`);
* :mod:`.decoders` — the label decoders (``uint``, ``string``, ``ksym``, ``syscall``, ...);
* :mod:`.collector` — maps read at scrape time into prometheus-client families;
* :mod:`.health` — self-metrics, ``/healthz`` and structured logs;
* :mod:`.otlp` — OTLP/HTTP push (``pip install 'tracekit[otlp]'``);
* :mod:`.spans` — ``tracing.spans``: ring-buffer records as OpenTelemetry spans;
* :mod:`.cgroups` — ``cgroup_id_map``: filter maps filled with matching cgroups;
* :mod:`.daemon` — :class:`Agent`: probes in one anyio task group, HTTP, signals, reload.

The command is ``tracekit agent --config DIR|FILE [--listen ADDR:PORT] [--otlp URL] [--strict]``.
A systemd unit example ships as ``tracekit/agent/tracekit-agent.service``.
"""

from tracekit.agent.config import CgroupIdMap, Config, Counter, Decoder, Histogram, Label, Span, load_file
from tracekit.agent.daemon import Agent

__all__ = ["Agent", "CgroupIdMap", "Config", "Counter", "Decoder", "Histogram", "Label", "Span", "load_file"]
