"""The agent: many probes in one process, their maps served to Prometheus and pushed by OTLP.

:class:`Agent` loads every config (a probe that fails to load or attach is reported in the
self-metrics and the logs, and the others run on; ``strict=True`` makes it fatal), serves
``/metrics`` and ``/healthz`` over HTTP, pushes OTLP if asked, and runs in one anyio task
group (asyncio or trio)::

    agent = Agent(config_path="/etc/tracekit/agent", listen=("127.0.0.1", 9435))
    anyio.run(agent.run)          # SIGHUP reloads, SIGTERM/SIGINT stop cleanly

A reload re-reads the configs: added ones are loaded, removed ones closed, changed ones
(YAML or object bytes differ) restarted, unchanged ones keep running with their maps.
Closing leaves nothing in the kernel: every object closes its links, programs and maps.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from tracekit.agent import health
from tracekit.agent.collector import (
    CONTENT_TYPE,
    AgentCollector,
    MetricReader,
    PerfCounterReader,
    Sampled,
    exposition,
    families,
)
from tracekit.agent.config import DEFAULT_MAX_SERIES, Config, Counter, Histogram, config_files, load_file
from tracekit.errors import AgentConfigError, TracekitError

log = logging.getLogger("tracekit.agent")

DEFAULT_LISTEN = ("127.0.0.1", 9435)


@dataclass
class ProgramState:
    name: str
    id: int
    tag: str
    attached: bool
    fd: int


class RunningConfig:
    """One config's object, its exported maps and its health."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.obj: Any = None
        self.probe: Any = None
        self.readers: list[MetricReader] = []
        self.span_readers: list[Any] = []
        self.programs: list[ProgramState] = []
        self.up = False
        self.errors = 0
        self.last_error: str | None = None
        self.load_seconds = 0.0
        self.started_ns = time.time_ns()
        self._lost_final = 0

    def decoder_errors(self) -> int:
        return (sum(r.stats.decoder_errors for r in self.readers)
                + sum(r.decoder_errors for r in self.span_readers))

    def lost(self) -> int:
        if self.obj is None:
            return self._lost_final
        try:
            return int(self.obj.lost)
        except TracekitError:
            return 0

    def run_stats(self, p: ProgramState) -> tuple[int, int]:
        from tracekit.kernel.syscalls import bpf

        try:
            info = bpf.prog_info(p.fd)
        except TracekitError:
            return 0, 0
        return info.run_time_ns, info.run_cnt

    def close(self) -> None:
        if self.obj is not None:
            self._lost_final = self.lost()
            self.obj.close()
        self.obj = None
        self.readers = []
        self.span_readers = []
        self.programs = []
        self.up = False


def _open(cfg: Config) -> tuple[Any, Any]:
    """(object, probe or None) for a config's ``object``: a path/bundled name or a Probe."""
    from tracekit.object import open_object
    from tracekit.probe import Probe

    src = cfg.object
    if isinstance(src, type) and issubclass(src, Probe):
        src = src()
    if isinstance(src, Probe):
        return src.open(), src
    return open_object(os.fspath(src) if isinstance(src, Path) else src), None


def _set_kaddrs(cfg: Config, obj: Any) -> None:
    from tracekit.symbols import kernel_symbols

    ks = kernel_symbols()
    for sym in cfg.kaddrs:
        s = ks.symbol(sym)
        if s is None:
            raise AgentConfigError(f"config {cfg.name!r}: kaddrs names {sym!r}, which /proc/kallsyms does not have")
        try:
            obj.set_global(f"kaddr_{sym}", s.addr)
        except KeyError:
            raise AgentConfigError(f"config {cfg.name!r}: kaddrs names {sym!r} but the object has no "
                                   f"'const volatile u64 kaddr_{sym}'") from None


class Agent:
    """Runs configs, serves their maps; see the module docstring."""

    def __init__(self, configs: Sequence[Config] = (), *, config_path: str | os.PathLike[str] | None = None,
                 names: Sequence[str] | None = None, listen: tuple[str, int] | None = DEFAULT_LISTEN,
                 otlp_url: str | None = None, otlp_interval: float = 10.0, otlp_traces_url: str | None = None,
                 strict: bool = False,
                 max_series: int = DEFAULT_MAX_SERIES, bpf_stats: bool = False,
                 cgroup_interval: float = 1.0) -> None:
        self.python_configs = list(configs)
        self.config_path = Path(config_path) if config_path is not None else None
        self.names = list(names) if names is not None else None
        self.listen = listen
        self.otlp_url = otlp_url
        self.otlp_interval = otlp_interval
        #: where tracing.spans go (default: beside otlp_url, .../v1/traces)
        self.otlp_traces_url = otlp_traces_url
        if otlp_traces_url is None and otlp_url:
            from tracekit.agent.spans import traces_url

            self.otlp_traces_url = traces_url(otlp_url)
        self.strict = strict
        self.max_series = max_series
        self.bpf_stats = bpf_stats
        self.cgroup_interval = cgroup_interval
        self.probes: dict[str, RunningConfig] = {}
        self.last_scrape_seconds = 0.0
        #: where the HTTP server listens once running (port 0 picks a free one)
        self.address: tuple[str, int] | None = None
        self.reloads = 0
        self._stats_fd: Any = None
        self._lock = threading.RLock()  # scrapes from an OTLP thread vs reloads
        self._cancel: anyio.CancelScope | None = None
        self._registry: Any = None
        #: configs whose YAML could not be read by the last start/reload: shown as down
        self._invalid: list[RunningConfig] = []

    # --- configs ------------------------------------------------------------------------------

    def read_configs(self) -> list[Config]:
        cfgs = list(self.python_configs)
        if self.config_path is not None:
            for f in config_files(self.config_path, self.names):
                try:
                    cfgs.append(load_file(f))
                except AgentConfigError as e:
                    if self.strict:
                        raise
                    name = f.name.removesuffix(".yaml").removesuffix(".yml")
                    log.error("config %s: %s", name, e, extra={"config": name, "error": str(e)})
                    rc = RunningConfig(_Invalid(name))  # type: ignore[arg-type]
                    rc.errors, rc.last_error = 1, str(e)
                    self._invalid.append(rc)
        seen: set[str] = set()
        for c in cfgs:
            if c.name in seen:
                raise AgentConfigError(f"two configs are named {c.name!r}: config names must be unique")
            seen.add(c.name)
        return cfgs

    def _start_config(self, cfg: Config) -> RunningConfig:
        rc = RunningConfig(cfg)
        t0 = time.perf_counter()
        try:
            obj, probe = _open(cfg)
            rc.obj, rc.probe = obj, probe
            _set_kaddrs(cfg, obj)
            obj.load()
            self._make_readers(rc)
            self._attach(rc)
            if cfg.cgroup_id_map is not None:
                from tracekit.agent import cgroups

                cgroups.sync(obj, cfg.cgroup_id_map)
        except (TracekitError, OSError) as e:
            rc.close()
            rc.errors += 1
            rc.last_error = str(e)
            log.error("config %s failed to load: %s", cfg.name, e, extra={"config": cfg.name, "error": str(e)})
            if self.strict:
                raise
            return rc
        except BaseException:
            rc.close()
            raise
        rc.up = True
        rc.load_seconds = time.perf_counter() - t0
        log.info("config %s loaded in %.3fs: %d programs, %d attached, %d metrics", cfg.name, rc.load_seconds,
                 len(rc.programs), sum(p.attached for p in rc.programs), len(rc.readers),
                 extra={"config": cfg.name})
        return rc

    def _make_readers(self, rc: RunningConfig) -> None:
        cfg, obj = rc.config, rc.obj
        metrics: list[Counter | Histogram] = [*cfg.counters, *cfg.histograms]
        for m in metrics:
            om = obj.maps.get(m.name)
            if isinstance(m, Counter) and m.perf_event_array:
                if om is None or om.type.name != "PERF_EVENT_ARRAY":
                    raise AgentConfigError(f"config {cfg.name!r}: perf_event_array counter {m.name!r} needs a "
                                           "BPF_MAP_TYPE_PERF_EVENT_ARRAY map of that name")
                rc.readers.append(PerfCounterReader(cfg.name, m, obj, max_series=self.max_series))
                continue
            if om is None:
                raise AgentConfigError(f"config {cfg.name!r}: metric {m.name!r} names no map of the object "
                                       f"(maps: {', '.join(obj.maps)})")
            if om.value_size != 8:
                raise AgentConfigError(f"config {cfg.name!r}: map {m.name!r} has {om.value_size}-byte values; "
                                       "exported maps hold u64 counts (value_size 8)")
            r = MetricReader(cfg.name, m, om, max_series=self.max_series)
            if r.layout_error is not None:
                log.error("config %s metric %s: %s", cfg.name, m.name, r.layout_error, extra={"config": cfg.name})
            rc.readers.append(r)

        for sp in cfg.spans:
            om = obj.maps.get(sp.ringbuf)
            if om is None or om.type.name != "RINGBUF":
                raise AgentConfigError(f"config {cfg.name!r}: tracing.spans names {sp.ringbuf!r}, which is not a "
                                       "BPF_MAP_TYPE_RINGBUF map of the object")
            from tracekit.agent.spans import SpanReader

            rc.span_readers.append(SpanReader(cfg.name, sp, obj))

    def _attach(self, rc: RunningConfig) -> None:
        from tracekit.kernel.syscalls import bpf

        cfg = rc.config
        for p in rc.obj.programs.values():
            if not p.loaded:
                continue
            info = bpf.prog_info(p.fd)
            st = ProgramState(p.name, info.id, info.tag, False, p.fd)
            rc.programs.append(st)
            if not p.attach_kind:
                # SEC("syscall"), socket filters...: nothing to attach to (libbpf's auto-attach
                # skips them too); the probe may run them itself
                log.debug("config %s: program %s (SEC %s) has no hook to attach to", cfg.name, p.name, p.section)
                continue
            if p.attach_kind == "uprobe" and p.attach_target.endswith(":post_attach_mark"):
                # ebpf_exporter's own initialisation hook: a Go function of its binary
                log.warning("config %s: program %s hooks ebpf_exporter's post_attach_mark, which this agent does "
                            "not have; not attached", cfg.name, p.name, extra={"config": cfg.name})
                continue
            try:
                p.attach()
                st.attached = True
            except (TracekitError, OSError) as e:
                rc.errors += 1
                rc.last_error = f"program {p.name}: {e}"
                log.error("config %s: program %s (SEC %s) failed to attach: %s", cfg.name, p.name, p.section, e,
                          extra={"config": cfg.name, "program": p.name, "error": str(e)})
                if self.strict:
                    raise

    def start(self) -> None:
        """Load every config (synchronously); ``strict`` raises on the first failure.
        Already started (e.g. by hand before :meth:`run`): nothing to do."""
        with self._lock:
            if self.probes:
                return
            if self.bpf_stats and self._stats_fd is None:
                from tracekit.kernel.syscalls import bpf

                self._stats_fd = bpf.enable_stats()
            self._invalid = []
            try:
                for cfg in self.read_configs():
                    self.probes[cfg.name] = self._start_config(cfg)
            except BaseException:
                self.close()
                raise
            for rc in self._invalid:
                self.probes[rc.config.name] = rc

    def reload(self) -> dict[str, list[str]]:
        """Re-read the configs: load added and changed ones, close removed ones, keep the
        unchanged ones running (a failed one is retried).  Returns the names by outcome."""
        with self._lock:
            self.reloads += 1
            self._invalid = []
            try:
                new = {c.name: c for c in self.read_configs()}
            except AgentConfigError as e:
                log.error("reload: %s; configs unchanged", e, extra={"error": str(e)})
                if self.strict:
                    raise
                return {"added": [], "removed": [], "changed": [], "unchanged": sorted(self.probes)}
            out: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "unchanged": []}
            for name in sorted(set(self.probes) - set(new)):
                self.probes.pop(name).close()
                out["removed"].append(name)
            for name, cfg in new.items():
                old = self.probes.get(name)
                if old is not None and old.up and old.config.fingerprint == cfg.fingerprint:
                    out["unchanged"].append(name)
                    continue
                if old is not None:
                    old.close()
                out["added" if old is None else "changed"].append(name)
                errors = old.errors if old is not None else 0
                rc = self._start_config(cfg)
                rc.errors += errors  # the counter keeps counting across restarts
                self.probes[name] = rc
            for rc in self._invalid:
                prev = self.probes.pop(rc.config.name, None)
                if prev is not None:
                    prev.close()
                    rc.errors += prev.errors
                self.probes[rc.config.name] = rc
            log.info("reload: %s", ", ".join(f"{k} {len(v)}" for k, v in out.items()), extra=dict(out))
            return out

    def close(self) -> None:
        """Close every probe (nothing stays in the kernel) and BPF stats."""
        with self._lock:
            for rc in self.probes.values():
                try:
                    rc.close()
                except Exception as e:  # noqa: BLE001 - every other probe must still close
                    log.error("config %s: close failed: %s", rc.config.name, e)
            self.probes.clear()
            if self._stats_fd is not None:
                self._stats_fd.close()
                self._stats_fd = None

    def bpf_stats_active(self) -> bool:
        if self._stats_fd is not None:
            return True
        try:
            return Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip() == "1"
        except OSError:
            return False

    # --- scraping --------------------------------------------------------------------------------

    def sample(self) -> list[tuple[RunningConfig, Sampled]]:
        """Every exported metric's samples now."""
        with self._lock:
            out = []
            for rc in self.probes.values():
                if not rc.up:
                    continue
                for r in rc.readers:
                    s = r.sample()
                    if s is not None:
                        out.append((rc, s))
            return out

    def families(self) -> list[Any]:
        t0 = time.perf_counter()
        fams = families([s for _, s in self.sample()])
        self.last_scrape_seconds = time.perf_counter() - t0
        return fams + health.self_families(self)

    @property
    def registry(self) -> Any:
        """A prometheus-client registry with the agent's collector and process metrics."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry, ProcessCollector

            reg = CollectorRegistry(auto_describe=False)
            reg.register(AgentCollector(self.families))
            ProcessCollector(registry=reg)
            self._registry = reg
        return self._registry

    def scrape(self) -> bytes:
        """The ``/metrics`` body."""
        return exposition(self.registry)

    # --- the daemon --------------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
                  handle_signals: bool | None = None) -> None:
        """Start, serve until cancelled or signalled (SIGHUP reloads, SIGTERM/SIGINT stop),
        then close everything.  ``task_status.started()`` is called once serving, with the
        address.  Signals are handled by default in the main thread only."""
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        self.start()
        try:
            listener = None
            if self.listen is not None:
                host, port = self.listen
                try:
                    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
                except OSError as e:
                    raise AgentConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}): pick another "
                                           "address with --listen ADDR:PORT") from None
                addr = listener.listeners[0].extra(anyio.abc.SocketAttribute.local_address)
                self.address = (str(addr[0]), int(addr[1]))
            async with anyio.create_task_group() as tg:
                self._cancel = tg.cancel_scope
                if listener is not None:
                    tg.start_soon(self._serve_http, listener)
                    host, port = self.address or ("?", 0)
                    log.info("serving /metrics on http://%s:%d", host, port)
                if self.otlp_url:
                    from tracekit.agent.otlp import OtlpPusher

                    tg.start_soon(OtlpPusher(self, self.otlp_url, self.otlp_interval).run)
                if any(rc.config.cgroup_id_map for rc in self.probes.values()) or self.config_path:
                    tg.start_soon(self._cgroup_loop)
                tg.start_soon(self._perf_loop)
                if any(rc.span_readers for rc in self.probes.values()) or self.config_path:
                    tg.start_soon(self._span_loop)
                if handle_signals:
                    await tg.start(self._signals)
                task_status.started(self.address)
        finally:
            self._cancel = None
            self.close()
            log.info("agent stopped")

    def stop(self) -> None:
        """Make :meth:`run` return (from the agent's event loop)."""
        if self._cancel is not None:
            self._cancel.cancel()

    async def _signals(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as sigs:
            task_status.started()
            async for s in sigs:
                if s == signal.SIGHUP:
                    log.info("SIGHUP: reloading configs")
                    self.reload()
                else:
                    log.info("%s: stopping", signal.Signals(s).name)
                    self.stop()
                    return

    async def _perf_loop(self, interval: float = 0.1) -> None:
        """Drain perf_event_array counters' buffers between scrapes, so that they do not
        overflow under a steady rate (ebpf_exporter reads them continuously)."""
        while True:
            await anyio.sleep(interval)
            with self._lock:
                for rc in self.probes.values():
                    for r in rc.readers:
                        if isinstance(r, PerfCounterReader):
                            try:
                                r.drain()
                            except TracekitError as e:
                                log.warning("config %s: %s: %s", rc.config.name, r.metric.name, e)

    async def _span_loop(self, interval: float = 0.2) -> None:
        """Drain tracing.spans ring buffers and export their spans (in a worker thread)."""
        exporter = None
        if self.otlp_traces_url:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                log.error("tracing.spans need opentelemetry: pip install 'tracekit[otlp]'; spans are dropped")
            else:
                exporter = OTLPSpanExporter(endpoint=self.otlp_traces_url, timeout=5)

        async def once() -> None:
            batch: list[tuple[Any, list[Any]]] = []
            with self._lock:
                for rc in self.probes.values():
                    for r in rc.span_readers:
                        spans = r.drain(build=exporter is not None)
                        if spans:
                            batch.append((r, spans))
            if not batch or exporter is None:
                return
            ok = await anyio.to_thread.run_sync(exporter.export, [sp for _, spans in batch for sp in spans])
            for r, spans in batch:
                if ok.name == "SUCCESS":
                    r.exported += len(spans)
                else:
                    r.dropped += len(spans)

        try:
            while True:
                await anyio.sleep(interval)
                await once()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await once()  # what the probes wrote before the stop
                except Exception as e:  # noqa: BLE001 - shutdown goes on
                    log.warning("final span export failed: %s", e)
                if exporter is not None:
                    exporter.shutdown()

    async def _cgroup_loop(self) -> None:
        from tracekit.agent import cgroups

        while True:
            await anyio.sleep(self.cgroup_interval)
            with self._lock:
                for rc in self.probes.values():
                    if rc.up and rc.config.cgroup_id_map is not None:
                        try:
                            cgroups.sync(rc.obj, rc.config.cgroup_id_map)
                        except (TracekitError, OSError) as e:
                            log.warning("config %s: cgroup map sync failed: %s", rc.config.name, e)

    async def _serve_http(self, listener: Any) -> None:
        async with listener:
            await listener.serve(self._handle)

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            try:
                with anyio.fail_after(10):
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, TimeoutError, OSError):
                return
            line = data.split(b"\r\n", 1)[0].decode(errors="replace").split()
            method, path = (line[0], line[1]) if len(line) >= 2 else ("", "")
            path = path.split("?", 1)[0]
            ctype = "text/plain; charset=utf-8"
            if method not in ("GET", "HEAD"):
                status, body = 405, b"method not allowed\n"
            elif path == "/metrics":
                try:
                    # in a worker thread: a large scrape does not hold up signals, other
                    # requests or the poll tasks (the agent's lock orders it with reloads)
                    status, body, ctype = 200, await anyio.to_thread.run_sync(self.scrape), CONTENT_TYPE
                except Exception as e:  # noqa: BLE001 - a scrape failure is a 500, not a dead agent
                    log.exception("scrape failed")
                    status, body = 500, f"scrape failed: {e}\n".encode()
            elif path == "/healthz":
                status, body = health.health(self)
                ctype = "application/json"
            elif path == "/":
                status, body = 200, b"<html><body><a href=\"/metrics\">Metrics</a> <a href=\"/healthz\">Health</a></body></html>\n"
                ctype = "text/html"
            else:
                status, body = 404, b"not found\n"
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
                      503: "Service Unavailable"}[status]
            head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n").encode()
            try:
                await stream.send(head + (body if method != "HEAD" else b""))
            except (anyio.BrokenResourceError, OSError):
                pass


@dataclass
class _Invalid:
    """Stands in for a config whose YAML could not be read (it shows as down)."""

    name: str
    cgroup_id_map: Any = None
    fingerprint: str = "invalid"
    counters: Sequence[Any] = ()
    histograms: Sequence[Any] = ()
