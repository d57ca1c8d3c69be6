"""``tracing.spans``: ring-buffer records turned into OpenTelemetry spans (ebpf_exporter's rules).

Each record is cut into the span's labels like a map key (``size`` then ``padding``), every
label decoded by its decoders; the labels named ``trace_id`` (hex, 16 bytes),
``span_id`` / ``parent_span_id`` (hex, 8 bytes; all zeros = no parent),
``span_monotonic_timestamp_ns`` (CLOCK_MONOTONIC, converted to wall time here),
``span_duration_ns`` and ``span_name`` are the span's fields, every other label is a string
attribute, plus ``ebpf_exporter.config``.  Spans are exported by OTLP/HTTP
(opentelemetry-sdk's span exporter) to the agent's traces endpoint; without one they are
counted as dropped.  Records are drained without blocking by the agent's poll task.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from tracekit.agent.config import Span
from tracekit.agent.decoders import SkipSample, decode_chain
from tracekit.errors import DecoderError

log = logging.getLogger("tracekit.agent")

FIELDS = frozenset({"trace_id", "span_id", "parent_span_id", "span_monotonic_timestamp_ns", "span_duration_ns",
                    "span_name"})


class SpanReader:
    """One ``tracing.spans`` entry of a loaded config."""

    def __init__(self, config: str, span: Span, obj: Any) -> None:
        self.config = config
        self.span = span
        self.service = span.service or os.environ.get("OTEL_SERVICE_NAME") or "ebpf_exporter"
        self.size = sum(lb.size + lb.padding for lb in span.labels)
        self.reader = obj.reader(span.ringbuf, raw=True)
        self.decoder_errors = 0
        self.exported = 0
        self.dropped = 0
        self._resource: Any = None

    def decode(self, rec: bytes) -> dict[str, str] | None:
        """Label name -> decoded value for one record (None: dropped by a regexp)."""
        if len(rec) < self.size:
            raise DecoderError(f"span record of {len(rec)} bytes, shorter than the labels' {self.size}")
        out = {}
        off = 0
        try:
            for lb in self.span.labels:
                out[lb.name] = decode_chain(rec[off:off + lb.size], lb.decoders)[0]
                off += lb.size + lb.padding
        except SkipSample:
            return None
        return out

    def drain(self, *, build: bool) -> list[Any]:
        """The spans of the records waiting now (``build=False``: count them as dropped)."""
        if self.reader.closed:
            return []
        recs = self.reader.read_available()
        if not build:
            self.dropped += len(recs)
            return []
        spans = []
        for rec in recs:
            try:
                labels = self.decode(bytes(rec))
                if labels is not None:
                    spans.append(self._span(labels))
            except (DecoderError, ValueError) as e:
                self.decoder_errors += 1
                log.debug("config %s span %s: %s", self.config, self.span.name, e)
        return spans

    def _span(self, labels: dict[str, str]) -> Any:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, TraceFlags

        trace_id = int(labels.get("trace_id", "0") or "0", 16)
        span_id = int(labels.get("span_id", "0") or "0", 16)
        parent_id = int(labels.get("parent_span_id", "0") or "0", 16)
        if not trace_id or not span_id:
            raise DecoderError("a span needs a non-zero trace_id and span_id")
        # CLOCK_MONOTONIC (bpf_ktime_get_ns) -> wall time: the offset between the two clocks now
        mono = int(labels.get("span_monotonic_timestamp_ns", "0"))
        start = time.time_ns() - time.monotonic_ns() + mono if mono else time.time_ns()
        end = start + int(labels.get("span_duration_ns", "0"))
        flags = TraceFlags(TraceFlags.SAMPLED)
        parent = SpanContext(trace_id, parent_id, is_remote=True, trace_flags=flags) if parent_id else None
        if self._resource is None:
            self._resource = Resource.create({"service.name": self.service})
        attrs = {k: v for k, v in labels.items() if k not in FIELDS}
        attrs["ebpf_exporter.config"] = self.config
        return ReadableSpan(
            name=labels.get("span_name") or self.span.name,
            context=SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags),
            parent=parent, resource=self._resource, attributes=attrs, start_time=start, end_time=end,
            instrumentation_scope=InstrumentationScope("tracekit.agent"))


def traces_url(metrics_url: str) -> str:
    """The OTLP/HTTP traces endpoint beside a metrics one (``.../v1/metrics`` -> ``.../v1/traces``)."""
    if metrics_url.endswith("/v1/metrics"):
        return metrics_url[: -len("metrics")] + "traces"
    return metrics_url.rstrip("/") + "/v1/traces"
