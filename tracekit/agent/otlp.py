"""OTLP/HTTP push of the agent's metrics (``pip install 'tracekit[otlp]'``).

Every ``interval`` seconds (and once more when the agent stops) the maps are read as for a
scrape and sent with opentelemetry-sdk's OTLP/HTTP metric exporter: counters as cumulative
monotonic Sums, histograms as cumulative explicit-bucket Histograms (``explicit_bounds`` =
the ``le`` values, per-bucket counts, sum and count), attributes = the labels.  Start time
of each point is when its config was loaded (a restart of the config restarts its points,
as a Prometheus counter reset does).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import anyio

from tracekit.agent.collector import PREFIX, Sampled
from tracekit.agent.config import Histogram
from tracekit.errors import NotSupportedError

log = logging.getLogger("tracekit.agent")


def _sdk() -> Any:
    try:
        from opentelemetry.sdk.metrics import export
    except ImportError:
        raise NotSupportedError("OTLP export", detail="install it with: pip install 'tracekit[otlp]'") from None
    return export


def metrics_data(sampled: Sequence[tuple[Any, Sampled]], *, service: str = "tracekit-agent") -> Any:
    """opentelemetry-sdk ``MetricsData`` for one read of the maps."""
    ex = _sdk()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    now = time.time_ns()
    cum = ex.AggregationTemporality.CUMULATIVE
    by_name: dict[str, tuple[Any, list[Any]]] = {}
    for rc, s in sampled:
        name = PREFIX + s.metric.name
        points = by_name.setdefault(name, (s.metric, []))[1]
        for labels, value in sorted(s.samples.items()):
            attrs = dict(zip(s.label_names, labels))
            if isinstance(s.metric, Histogram):
                buckets, total, count = value
                bounds = [float(le) for le, _ in buckets]
                counts, prev = [], 0
                for _, c in buckets:
                    counts.append(c - prev)
                    prev = c
                counts.append(count - prev)  # the +Inf bucket: always 0 (count = in-range sum)
                points.append(ex.HistogramDataPoint(
                    attributes=attrs, start_time_unix_nano=rc.started_ns, time_unix_nano=now, count=int(count),
                    sum=float(total), bucket_counts=counts, explicit_bounds=bounds, min=None, max=None))
            else:
                points.append(ex.NumberDataPoint(attributes=attrs, start_time_unix_nano=rc.started_ns,
                                                 time_unix_nano=now, value=float(value)))
    metrics = []
    for name in sorted(by_name):
        m, points = by_name[name]
        if isinstance(m, Histogram):
            data: Any = ex.Histogram(data_points=points, aggregation_temporality=cum)
        else:
            data = ex.Sum(data_points=points, aggregation_temporality=cum, is_monotonic=True)
        metrics.append(ex.Metric(name=name, description=m.help, unit="", data=data))
    scope = ex.ScopeMetrics(scope=InstrumentationScope("tracekit.agent"), metrics=metrics, schema_url="")
    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win, as in every OpenTelemetry SDK
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
    res = ex.ResourceMetrics(resource=Resource.create(attrs), scope_metrics=[scope],
                             schema_url="")
    return ex.MetricsData(resource_metrics=[res])


class OtlpPusher:
    """The agent's OTLP task: push every ``interval`` seconds, and a last time at stop."""

    def __init__(self, agent: Any, url: str, interval: float = 10.0) -> None:
        _sdk()
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        self.agent = agent
        self.url = url
        self.interval = interval
        self.exporter = OTLPMetricExporter(endpoint=url, timeout=5)
        self.pushes = 0
        self.failures = 0

    def push(self) -> bool:
        data = metrics_data(self.agent.sample())
        result = self.exporter.export(data)
        ok = bool(result.name == "SUCCESS")
        if ok:
            self.pushes += 1
        else:
            self.failures += 1
            log.warning("OTLP push to %s failed", self.url, extra={"url": self.url})
        return ok

    async def run(self) -> None:
        try:
            while True:
                await anyio.sleep(self.interval)
                await anyio.to_thread.run_sync(self.push)
        finally:
            # the last values before the probes close (shielded: we are being cancelled)
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(self.push)
                except Exception as e:  # noqa: BLE001 - shutdown goes on
                    log.warning("final OTLP push failed: %s", e)
                self.exporter.shutdown()
