"""Maps -> Prometheus families at scrape time (a prometheus-client custom collector).

Nothing runs per event in Python: the kernel aggregates into maps, and a scrape reads
each exported map once (batch lookup), cuts every key into labels, decodes them (cached
per raw key), sums samples whose decoded labels are equal, and builds the families.

ebpf_exporter's rules (see the agent README section): labels cut in order by ``size`` and
``padding``; per-CPU values summed, or one sample per CPU when the last label is ``cpu``;
histograms from a bucket-index last label, with ``le`` per ``bucket_type`` and the sum
at index ``bucket_max + 1``.  A metric whose key layout does not add up is left out of the
scrape and counted as a decoder error of its config.
"""

from __future__ import annotations

import decimal
import functools
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracekit.agent.config import DEFAULT_MAX_SERIES, Counter, Histogram, Label
from tracekit.agent.decoders import SkipSample, decode_chain
from tracekit.errors import DecoderError, TracekitError

log = logging.getLogger("tracekit.agent")

PREFIX = "ebpf_exporter_"
#: decoded label sets cached per metric before the cache is dropped and rebuilt (keeps
#: memory flat when keys churn, e.g. pids or addresses)
DECODE_CACHE_LIMIT = 100_000

_PER_CPU = {"PERCPU_HASH", "PERCPU_ARRAY", "LRU_PERCPU_HASH"}


def go_float(f: float) -> str:
    """Go's ``strconv.FormatFloat(f, 'g', -1, 64)`` (see :func:`_go_float`), integers fast."""
    f = float(f)
    if f.is_integer() and -1e6 < f < 1e6:
        return str(int(f))
    return _go_float(f)


@functools.lru_cache(maxsize=4096)
def _go_float(f: float) -> str:
    """Go's ``strconv.FormatFloat(f, 'g', -1, 64)``, as ebpf_exporter prints ``le``: shortest
    round-trip digits, exponent form when the decimal exponent is < -4 or >= 6."""
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if math.isnan(f):
        return "NaN"
    if f == 0:
        return "0"
    d = decimal.Decimal(repr(f))
    sign, digits, exp = d.as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exp, int)
    x = len(digits) + exp - 1  # decimal exponent of the first digit
    s = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{s}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if x < 0:
        return f"{s}0.{'0' * (-x - 1)}{ds}"
    if len(ds) <= x + 1:
        return s + ds + "0" * (x + 1 - len(ds))
    return f"{s}{ds[:x + 1]}.{ds[x + 1:]}"


def go_parse_uint(s: str) -> int:
    """Go's ``strconv.ParseUint(s, 0, 64)``: 0x/0o/0b prefixes, a leading 0 means octal."""
    t = s.replace("_", "")
    if len(t) > 1 and t[0] == "0" and t[1].isdigit():
        v = int(t, 8)
    else:
        v = int(t, 0)
    if v < 0 or v >= 1 << 64:
        raise ValueError(s)
    return v


@dataclass
class MetricStats:
    decoder_errors: int = 0
    series_dropped: int = 0


@dataclass
class Sampled:
    """One metric's samples of one scrape."""

    metric: Counter | Histogram
    label_names: list[str]
    #: counters: label values -> value; histograms: label values -> (cumulative buckets, sum, count)
    samples: dict[tuple[str, ...], Any] = field(default_factory=dict)


class MetricReader:
    """Reads one exported map; built once per loaded config and metric."""

    def __init__(self, config: str, metric: Counter | Histogram, omap: Any, *,
                 max_series: int = DEFAULT_MAX_SERIES, cpus: int = 1) -> None:
        self.config = config
        self.metric = metric
        self.omap = omap
        self.max_series = metric.max_series or max_series
        self.stats = MetricStats()
        self.map_type = omap.type.name
        self.per_cpu = self.map_type in _PER_CPU
        labels = list(metric.labels)
        self.cpu_label = self.per_cpu and bool(labels) and labels[-1].name == "cpu"
        self.labels: list[Label] = labels
        self.key_size = omap.key_size
        self._cache: dict[bytes, tuple[str, ...] | None] = {}
        #: series exported last scrape: they keep their place under the cardinality bound
        self._admitted: set[tuple[str, ...]] = set()
        self.layout_error = self._check_layout()

    def _check_layout(self) -> str | None:
        total = sum(lb.size + lb.padding for lb in self.labels)
        want = self.key_size + (2 if self.cpu_label else 0)
        if self.cpu_label and len(self.labels) == 1:
            want = 2  # the 4-byte zero key of a per-CPU array is dropped first
        if not self.labels:
            return None if self.key_size == 4 else (
                f"has no labels but its key is {self.key_size} bytes (declare labels for the key)")
        if total != want:
            return (f"labels take {total} bytes (size + padding) but the key is {self.key_size} bytes"
                    + (" + 2 for the cpu label" if self.cpu_label else "") + ": fix the labels' size/padding")
        return None

    # --- raw reading ------------------------------------------------------------------------

    def _raw(self) -> Iterator[tuple[bytes, int]]:
        """(key, u64 value) pairs, per-CPU maps summed or expanded with the CPU index."""
        m = self.omap.raw
        try:
            items = m.lookup_batch()
        except TracekitError:
            items = list(m.items())
        native = sys.byteorder
        for key, value in items:
            if isinstance(value, list):
                if self.cpu_label:
                    base = b"" if len(self.labels) == 1 and key[:4] == b"\0\0\0\0" else key
                    for cpu, v in enumerate(value):
                        yield base + cpu.to_bytes(2, native), int.from_bytes(v[:8], native)
                else:
                    yield key, sum(int.from_bytes(v[:8], native) for v in value)
            else:
                yield key, int.from_bytes(value[:8], native)

    def _decode(self, key: bytes) -> tuple[str, ...] | None:
        """Label values of a raw key (None: drop the sample); DecoderError on a bad field."""
        hit = self._cache.get(key, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        if not self.labels:
            if key != b"\0\0\0\0":
                raise DecoderError(f"key {key.hex()} of a metric without labels (only index 0 is exported)")
            out: tuple[str, ...] | None = ()
        else:
            vals = []
            off = 0
            cacheable = True
            try:
                for lb in self.labels:
                    v, ok = decode_chain(key[off:off + lb.size], lb.decoders)
                    vals.append(v)
                    cacheable &= ok
                    off += lb.size + lb.padding
                out = tuple(vals)
            except SkipSample:
                out = None
            if not cacheable:
                return out
        if len(self._cache) >= DECODE_CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = out
        return out

    def _aggregate(self) -> dict[tuple[str, ...], Any]:
        agg: dict[tuple[str, ...], int] = {}
        for key, value in self._raw():
            labels = self._decode(key)
            if labels is None:
                continue
            agg[labels] = agg.get(labels, 0) + value
        return agg

    def _bound(self, keys: Sequence[tuple[str, ...]]) -> set[tuple[str, ...]]:
        """The label sets exported this scrape: last scrape's first, then new ones in sorted
        order, up to ``max_series``; the rest are counted as dropped."""
        if len(keys) <= self.max_series:
            self._admitted = set(keys)
            return self._admitted
        keep = [k for k in keys if k in self._admitted][:self.max_series]
        room = self.max_series - len(keep)
        new = sorted(k for k in keys if k not in self._admitted)
        keep += new[:room]
        self.stats.series_dropped += len(keys) - len(keep)
        self._admitted = set(keep)
        return self._admitted

    # --- one scrape ---------------------------------------------------------------------------

    def sample(self) -> Sampled | None:
        """This metric's samples now, or None when it is left out of this scrape (the
        reason counted as a decoder error)."""
        if self.layout_error is not None:
            self.stats.decoder_errors += 1
            return None
        try:
            agg = self._aggregate()
        except DecoderError as e:
            self.stats.decoder_errors += 1
            log.debug("config %s metric %s: %s", self.config, self.metric.name, e)
            return None
        except (TracekitError, OSError, ValueError, UnicodeError) as e:
            # a map read or decoder failing in a way not foreseen: this metric is left out of
            # the scrape (counted), the others are still served
            self.stats.decoder_errors += 1
            log.warning("config %s metric %s: %s: %s", self.config, self.metric.name, type(e).__name__, e)
            return None
        if isinstance(self.metric, Histogram):
            return self._histograms(agg)
        names = [lb.name for lb in self.labels]
        keep = self._bound(list(agg))
        return Sampled(self.metric, names, {k: float(v) for k, v in agg.items() if k in keep})

    def _histograms(self, agg: dict[tuple[str, ...], int]) -> Sampled | None:
        h = self.metric
        assert isinstance(h, Histogram)
        grouped: dict[tuple[str, ...], dict[int, int]] = {}
        try:
            for labels, v in agg.items():
                idx = go_parse_uint(labels[-1])
                slots = grouped.setdefault(labels[:-1], {})
                slots[idx] = slots.get(idx, 0) + v
        except ValueError:
            # as ebpf_exporter: a bucket label that is no number drops the histogram this scrape
            self.stats.decoder_errors += 1
            return None
        m = h.bucket_multiplier
        if h.bucket_type == "fixed":
            keys = [int(k) for k in h.bucket_keys]
            bounds = [(k, k * m) for k in keys]
            sum_idx = keys[-1] + 1
        else:
            rng = range(h.bucket_min, h.bucket_max + 1)
            if h.bucket_type == "exp2":
                bounds = [(i, float(2 ** i) * m) for i in rng]
            elif h.bucket_type == "exp2zero":
                bounds = [(i, 0.0 if i == 0 else float(2 ** (i - 1)) * m) for i in rng]
            else:  # linear
                bounds = [(i, float(i) * m) for i in rng]
            sum_idx = h.bucket_max + 1
        out: dict[tuple[str, ...], Any] = {}
        keep = self._bound(list(grouped))
        for labels, slots in grouped.items():
            if labels not in keep:
                continue
            cum = 0
            buckets = []
            for idx, le in bounds:
                cum += slots.get(idx, 0)
                buckets.append((le, cum))
            out[labels] = (buckets, slots.get(sum_idx, 0) * m, cum)
        return Sampled(h, [lb.name for lb in self.labels[:-1]], out)


class PerfCounterReader(MetricReader):
    """A ``perf_event_array: true`` counter: every record the probe outputs is cut to the
    labels' bytes, decoded, and adds 1 to its series; the counts are reset every
    ``flush_interval`` seconds (as ebpf_exporter).  Records are drained without blocking at
    each scrape and by the agent's poll task between scrapes; what the per-CPU buffers
    could not hold is the probe's ``lost`` count."""

    def __init__(self, config: str, metric: Counter, obj: Any, *, max_series: int = DEFAULT_MAX_SERIES,
                 page_count: int = 64) -> None:
        super().__init__(config, metric, obj.maps[metric.name], max_series=max_series)
        self.per_cpu = self.cpu_label = False
        self.key_size = sum(lb.size + lb.padding for lb in self.labels)
        self.layout_error = None
        self.reader = obj.reader(metric.name, raw=True, page_count=page_count)
        self.flush_interval = metric.flush_interval
        self._counts: dict[bytes, int] = {}
        self._short = 0
        self._flushed = time.monotonic()

    def drain(self) -> None:
        if self.reader.closed:
            return
        counts, n = self._counts, self.key_size
        for rec in self.reader.read_available():
            key = bytes(rec[:n])
            if len(key) < n:
                self._short += 1  # shorter than the labels: a decoder error at the next scrape
                continue
            counts[key] = counts.get(key, 0) + 1

    def _raw(self) -> Iterator[tuple[bytes, int]]:
        self.drain()
        if self._short:
            self._short = 0
            raise DecoderError(f"perf event records shorter than the labels' {self.key_size} bytes")
        now = time.monotonic()
        if now - self._flushed >= self.flush_interval:
            self._counts, self._flushed = {}, now
        yield from list(self._counts.items())


# --- prometheus-client families ----------------------------------------------------------------


def families(sampled: Sequence[Sampled]) -> list[Any]:
    """prometheus-client metric families (``ebpf_exporter_<name>``) for the sampled metrics;
    metrics of the same name in several configs share one family.

    Counters are plain ``Metric(type="counter")`` families whose samples carry the metric's
    own name: ebpf_exporter (Go's client) does not append ``_total`` to a counter, and a
    dashboard queries the names it exported."""
    from prometheus_client.core import HistogramMetricFamily, Metric

    fams: dict[str, Any] = {}
    for s in sampled:
        name = PREFIX + s.metric.name
        fam = fams.get(name)
        # Go's client orders samples by label values taken in label-name order
        order = sorted(range(len(s.label_names)), key=lambda i: s.label_names[i])
        if order == sorted(order):
            items = sorted(s.samples.items(), key=lambda kv: kv[0])
        else:
            items = sorted(s.samples.items(), key=lambda kv: [kv[0][i] for i in order])
        if isinstance(s.metric, Histogram):
            if fam is None:
                fam = fams[name] = HistogramMetricFamily(name, s.metric.help, labels=s.label_names)
            for labels, (buckets, total, count) in items:
                b = [(go_float(le), float(c)) for le, c in buckets] + [("+Inf", float(count))]
                fam.add_metric(list(labels), b, float(total))
        else:
            if fam is None:
                fam = fams[name] = Metric(name, s.metric.help, "counter")
                setattr(fam, "tk_sorted", True)  # noqa: B010 - exposition() need not sort these again
            names = s.label_names
            for labels, value in items:
                fam.add_sample(name, dict(zip(names, labels)), value)
    for f in fams.values():
        # several configs may export one metric name: their samples interleave
        if getattr(f, "tk_sorted", False) and len({id(x) for x in sampled if PREFIX + x.metric.name == f.name}) > 1:
            setattr(f, "tk_sorted", False)  # noqa: B010
    return [fams[k] for k in sorted(fams) if fams[k].samples]


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_help(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample_key(labels: dict[str, str]) -> tuple[Any, ...]:
    # Go's client orders samples by their label values in label-name order, le as a number
    return tuple((k, float(v) if k == "le" else 0.0, v if k != "le" else "")
                 for k, v in sorted(labels.items(), key=lambda kv: (kv[0] == "le", kv[0])))


def exposition(registry: Any) -> bytes:
    """Text format 0.0.4 of a prometheus-client registry, laid out as ebpf_exporter's Go
    client writes it: families sorted by name, label pairs sorted with ``le`` last, numbers
    in Go's shortest form (``1``, ``1e+06``), counters under their own names."""
    out: list[str] = []
    fams = sorted(registry.collect(), key=lambda f: f.name)
    for fam in fams:
        if not fam.samples:
            continue
        mtype = {"unknown": "untyped", "info": "gauge", "stateset": "gauge",
                 "gaugehistogram": "histogram"}.get(fam.type, fam.type)
        name = fam.name
        if fam.type == "counter" and all(s.name == name + "_total" for s in fam.samples):
            name += "_total"
        elif fam.type == "info":
            name += "_info"
        out.append(f"# HELP {name} {_escape_help(fam.documentation)}\n# TYPE {name} {mtype}\n")
        samples = [s for s in fam.samples if not s.name.endswith("_created")]
        if fam.type == "histogram":
            # series by label set; per series _bucket lines (le ascending), _sum, _count
            series: dict[tuple[tuple[str, str], ...], list[Any]] = {}
            for s in samples:
                base = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                series.setdefault(base, []).append(s)
            order = {"_bucket": 0, "_sum": 1, "_count": 2}
            for base in sorted(series, key=lambda b: tuple(v for _, v in b)):
                ss = sorted(series[base], key=lambda s: (order.get(s.name[len(fam.name):], 3),
                                                          float(s.labels.get("le", "0"))))
                out.extend(_line(s) for s in ss)
        else:
            if not getattr(fam, "tk_sorted", False):
                samples = sorted(samples, key=lambda s: (s.name, _sample_key(s.labels)))
            out.extend(_line(s) for s in samples)
    return "".join(out).encode()


_LABEL_TEXT: dict[tuple[tuple[str, str], ...], str] = {}


def _labels_text(labels: dict[str, str]) -> str:
    """``{a="x",b="y"}`` (sorted, ``le`` last, escaped), cached: the same label sets come
    back every scrape."""
    key = tuple(labels.items())
    text = _LABEL_TEXT.get(key)
    if text is None:
        pairs = sorted(labels.items(), key=lambda kv: (kv[0] == "le", kv[0]))
        text = "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in pairs) + "}"
        if len(_LABEL_TEXT) >= 4 * DECODE_CACHE_LIMIT:
            _LABEL_TEXT.clear()
        _LABEL_TEXT[key] = text
    return text


def _line(s: Any) -> str:
    lab = _labels_text(s.labels) if s.labels else ""
    return f"{s.name}{lab} {go_float(s.value)}\n"


class AgentCollector:
    """The custom collector registered with a prometheus-client registry; ``source`` returns
    the families of one scrape (the agent's metrics and its self-metrics)."""

    def __init__(self, source: Callable[[], list[Any]]) -> None:
        self._source = source

    def describe(self) -> list[Any]:
        return []  # families vary with the configs loaded: not described up front

    def collect(self) -> Iterator[Any]:
        yield from self._source()
