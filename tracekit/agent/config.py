"""Agent configs: ebpf_exporter's YAML format, and the same model declared in Python.

An ebpf_exporter config is ``<dir>/<name>.yaml`` next to its object ``<dir>/<name>.bpf.o``.
:func:`load_configs` reads a directory (every ``*.yaml`` that has its object) or one file;
:class:`Config` can also be built in Python, with ``object`` a path, a bundled probe
name, or a :class:`tracekit.Probe` (class or instance: its knobs and program choice apply)::

    Config("opens", object=OpenCount(), counters=[
        Counter("open_count", "opens by comm", labels=[Label("comm", 16, decoders=[Decoder("string")])])])

Unknown YAML keys are ignored, as ebpf_exporter's non-strict YAML decoding does; the
static_map keys and values are taken as the scalar text written in the file (``0x10``,
``yes`` and ``01`` stay strings), which is what ebpf_exporter's YAML library does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracekit.agent.decoders import DecoderSpec, compile_decoder
from tracekit.errors import AgentConfigError, DecoderError

Decoder = DecoderSpec
BUCKET_TYPES = ("exp2", "exp2zero", "linear", "fixed")
#: default bound on the series one metric exports per scrape
DEFAULT_MAX_SERIES = 10_000


@dataclass(frozen=True)
class Label:
    """A label cut from a map key: ``size`` bytes, then ``padding`` bytes skipped."""

    name: str
    size: int
    decoders: Sequence[DecoderSpec] = ()
    padding: int = 0


@dataclass(frozen=True)
class Counter:
    name: str
    help: str
    labels: Sequence[Label] = ()
    perf_event_array: bool = False
    flush_interval: float = 3600.0
    #: series kept per scrape (None: the agent's default); the rest are counted as dropped
    max_series: int | None = None


@dataclass(frozen=True)
class Histogram:
    name: str
    help: str
    bucket_type: str
    bucket_min: int = 0
    bucket_max: int = 0
    bucket_keys: Sequence[float] = ()
    bucket_multiplier: float = 1.0
    labels: Sequence[Label] = ()
    max_series: int | None = None


@dataclass(frozen=True)
class Span:
    """A ``tracing.spans[]`` entry: every record of ring buffer ``ringbuf`` is one span.

    Labels named ``trace_id`` (hex), ``parent_span_id``/``span_id`` (hex, all zeros = none),
    ``span_monotonic_timestamp_ns`` (CLOCK_MONOTONIC), ``span_duration_ns`` and
    ``span_name`` fill the span's fields (after their decoders); the others are string
    attributes."""

    ringbuf: str
    name: str = ""
    service: str = ""
    labels: Sequence[Label] = ()


@dataclass(frozen=True)
class CgroupIdMap:
    name: str
    type: str
    regexps: Sequence[str] = ()


@dataclass
class Config:
    """One probe: an object and the maps it exports."""

    name: str
    #: path of the .bpf.o, a bundled probe name, or a tracekit.Probe (class or instance)
    object: Any
    counters: Sequence[Counter] = ()
    histograms: Sequence[Histogram] = ()
    kaddrs: Sequence[str] = ()
    cgroup_id_map: CgroupIdMap | None = None
    spans: Sequence[Span] = ()
    #: the YAML file it came from (None: declared in Python)
    source: Path | None = None
    #: what reload compares: a changed fingerprint restarts the probe
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.counters and not self.histograms and not self.spans:
            raise AgentConfigError(f"config {self.name!r}: nothing to export: give metrics.counters, "
                                   "metrics.histograms or tracing.spans")
        metrics: list[Counter | Histogram] = [*self.counters, *self.histograms]
        for m in metrics:
            if not m.name or not m.help:
                raise AgentConfigError(f"config {self.name!r}: every counter and histogram needs 'name' and 'help'")
            for lb in m.labels:
                if lb.size <= 0 or lb.padding < 0:
                    raise AgentConfigError(f"config {self.name!r}: metric {m.name!r} label {lb.name!r}: "
                                           "'size' must be > 0 bytes and 'padding' >= 0")
                if not lb.decoders:
                    raise AgentConfigError(f"config {self.name!r}: metric {m.name!r} label {lb.name!r} has no "
                                           "decoders (e.g. decoders: [{name: uint}])")
        for h in self.histograms:
            if h.bucket_type not in BUCKET_TYPES:
                raise AgentConfigError(f"config {self.name!r}: histogram {h.name!r}: bucket_type "
                                       f"{h.bucket_type!r} is not one of {', '.join(BUCKET_TYPES)}")
            if h.bucket_type == "fixed" and not h.bucket_keys:
                raise AgentConfigError(f"config {self.name!r}: fixed histogram {h.name!r} needs bucket_keys")
            if not h.labels:
                raise AgentConfigError(f"config {self.name!r}: histogram {h.name!r} needs a last label that "
                                       "holds the bucket index")
        if not self.fingerprint:
            self.fingerprint = f"python:{id(self.object)}:{self.name}"


# --- YAML ------------------------------------------------------------------------------------------


def _yaml_loader() -> Any:
    try:
        import yaml
    except ImportError:
        raise AgentConfigError("reading ebpf_exporter configs needs PyYAML: pip install 'tracekit[agent]'") from None

    class Loader(yaml.SafeLoader):  # (PyYAML ships no hints: yaml is Any to mypy, see pyproject)
        pass

    # ebpf_exporter reads static_map keys/values as their scalar text; with every scalar a
    # string here, numbers are converted where the schema wants them (_int/_float below)
    def scalar(loader: Any, node: Any) -> str:
        return str(node.value)

    for tag in ("bool", "int", "float", "null", "timestamp"):
        Loader.add_constructor(f"tag:yaml.org,2002:{tag}", scalar)
    return yaml, Loader


def _int(v: Any, what: str) -> int:
    try:
        return int(str(v), 0)
    except ValueError:
        raise AgentConfigError(f"{what}: {v!r} is not an integer") from None


def _float(v: Any, what: str) -> float:
    try:
        return float(str(v))
    except ValueError:
        raise AgentConfigError(f"{what}: {v!r} is not a number") from None


def _bool(v: Any) -> bool:
    return str(v).lower() in ("true", "yes", "on", "1", "y")


def parse_duration(text: str) -> float:
    """A Go duration (``1h``, ``30s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text.strip():
        raise AgentConfigError(f"flush_interval {text!r} is not a duration such as '1h', '30s' or '1m30s'")
    return sum(float(a) * units[b] for a, b in parts)


def _labels(raw: Any, where: str) -> list[Label]:
    out = []
    for lb in raw or ():
        name = str(lb.get("name", ""))
        decs = []
        for d in lb.get("decoders") or ():
            sm = d.get("static_map")
            spec = DecoderSpec(
                name=str(d.get("name", "")),
                static_map={str(k): str(v) for k, v in sm.items()} if isinstance(sm, Mapping) else None,
                allow_unknown=_bool(d.get("allow_unknown", False)),
                regexps=tuple(str(r) for r in d.get("regexps") or ()),
            )
            try:
                decs.append(compile_decoder(spec))
            except DecoderError as e:
                raise AgentConfigError(f"{where} label {name!r}: {e}") from None
        if "size" not in lb:
            raise AgentConfigError(f"{where} label {name!r}: 'size' (bytes of the key) is required")
        out.append(Label(name, _int(lb["size"], f"{where} label {name!r} size"), decs,
                         _int(lb.get("padding", 0), f"{where} label {name!r} padding")))
    return out


def parse_config(name: str, text: str, object_path: Path | str, *, source: Path | None = None,
                 fingerprint: str = "") -> Config:
    """An ebpf_exporter YAML document -> :class:`Config`."""
    yaml, loader = _yaml_loader()
    try:
        doc = yaml.load(text, Loader=loader) or {}
    except yaml.YAMLError as e:
        raise AgentConfigError(f"config {name!r}: not valid YAML: {e}") from None
    if not isinstance(doc, Mapping):
        raise AgentConfigError(f"config {name!r}: the document must be a mapping with a 'metrics' key")
    metrics = doc.get("metrics") or {}
    counters = []
    for c in metrics.get("counters") or ():
        where = f"config {name!r} counter {c.get('name')!r}"
        counters.append(Counter(
            name=str(c.get("name", "")), help=str(c.get("help", "")), labels=_labels(c.get("labels"), where),
            perf_event_array=_bool(c.get("perf_event_array", False)),
            flush_interval=parse_duration(str(c["flush_interval"])) if c.get("flush_interval") else 3600.0,
            max_series=_int(c["max_series"], where) if c.get("max_series") else None,
        ))
    hists = []
    for h in metrics.get("histograms") or ():
        where = f"config {name!r} histogram {h.get('name')!r}"
        mult = _float(h.get("bucket_multiplier", 0) or 0, where)
        hists.append(Histogram(
            name=str(h.get("name", "")), help=str(h.get("help", "")), bucket_type=str(h.get("bucket_type", "")),
            bucket_min=_int(h.get("bucket_min", 0), where), bucket_max=_int(h.get("bucket_max", 0), where),
            bucket_keys=tuple(_float(k, where) for k in h.get("bucket_keys") or ()),
            bucket_multiplier=mult if mult else 1.0, labels=_labels(h.get("labels"), where),
            max_series=_int(h["max_series"], where) if h.get("max_series") else None,
        ))
    cg = doc.get("cgroup_id_map")
    cgmap = None
    if cg:
        cgmap = CgroupIdMap(str(cg.get("name", "")), str(cg.get("type", "hash")),
                            tuple(str(r) for r in cg.get("regexps") or ()))
        if cgmap.type not in ("hash", "cgrp_storage"):
            raise AgentConfigError(f"config {name!r}: cgroup_id_map type {cgmap.type!r} is not hash or cgrp_storage")
    spans = []
    for sp in (doc.get("tracing") or {}).get("spans") or ():
        ring = str(sp.get("ringbuf", ""))
        if not ring:
            raise AgentConfigError(f"config {name!r}: a tracing.spans entry needs 'ringbuf' (the ring buffer map)")
        spans.append(Span(ringbuf=ring, name=str(sp.get("name") or ring), service=str(sp.get("service") or ""),
                          labels=_labels(sp.get("labels"), f"config {name!r} span {ring!r}")))
    if not counters and not hists and not spans:
        raise AgentConfigError(f"config {name!r}: no metrics.counters, metrics.histograms or tracing.spans")
    return Config(name=name, object=Path(object_path) if not isinstance(object_path, Path) else object_path,
                  counters=counters, histograms=hists, kaddrs=tuple(str(k) for k in doc.get("kaddrs") or ()),
                  cgroup_id_map=cgmap, spans=spans, source=source, fingerprint=fingerprint)


def load_file(path: str | Path) -> Config:
    """One ``<name>.yaml``; its object is ``<name>.bpf.o`` beside it."""
    p = Path(path)
    name = p.name.removesuffix(".yaml").removesuffix(".yml")
    obj = p.with_name(name + ".bpf.o")
    try:
        text = p.read_bytes()
    except OSError as e:
        raise AgentConfigError(f"config {name!r}: cannot read {p}: {e.strerror}") from None
    if not obj.exists():
        raise AgentConfigError(f"config {name!r}: its object {obj} does not exist (build it next to {p.name})")
    digest = hashlib.sha256(text + b"\0" + obj.read_bytes()).hexdigest()
    return parse_config(name, text.decode(errors="replace"), obj, source=p, fingerprint=digest)


def config_files(path: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """The YAML files of a directory (sorted; only ``names`` if given), or the file itself."""
    p = Path(path)
    if p.is_dir():
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        if names is not None:
            by_name = {f.name.removesuffix(".yaml").removesuffix(".yml"): f for f in files}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise AgentConfigError(f"no config {', '.join(missing)} in {p} (have: {', '.join(by_name) or 'none'})")
            files = [by_name[n] for n in names]
        return files
    if not p.exists():
        raise AgentConfigError(f"no such config file or directory: {p}")
    return [p]
