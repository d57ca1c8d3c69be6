"""The agent (tracekit.agent) against the running kernel: ebpf_exporter-format configs written
for this project (tests/objects/agent_configs/*.yaml + tests/objects/agent_*.bpf.c), a known
workload (lseek(fd, AGENT_MAGIC + v, SEEK_SET) on /dev/null from this process, pinned to
one CPU), /metrics scraped over loopback HTTP and parsed with prometheus_client's parser.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support import build_bpf_object, open_fds, require_live

pytestmark = pytest.mark.live

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tracekit.agent import Agent  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "objects" / "agent_configs"
MAGIC = 0x7A6B00000000
VALUES = [0, 1, 2, 3, 5, 8, 100, 1000, 3000, 7]
OBJECTS = {"agent_basic": "agent_basic.bpf.c", "agent_hist": "agent_hist.bpf.c",
           "agent_percpu": "agent_percpu.bpf.c", "agent_broken": "agent_broken.bpf.c",
           "agent_missing_map": "agent_broken.bpf.c"}


def make_config_dir(d: Path, names: list[str] | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name in names or list(OBJECTS):
        shutil.copy(build_bpf_object(OBJECTS[name]), d / f"{name}.bpf.o")
        shutil.copy(CONFIGS / f"{name}.yaml", d / f"{name}.yaml")
    return d


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    require_live()
    return make_config_dir(tmp_path / "configs")


def workload(values: list[int] = VALUES) -> int:
    """The seeks the objects count, from this process pinned to one CPU; returns the CPU."""
    cpu = sorted(os.sched_getaffinity(0))[-1]
    old = os.sched_getaffinity(0)
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        os.sched_setaffinity(0, {cpu})
        for v in values:
            os.lseek(fd, MAGIC + v, os.SEEK_SET)
    finally:
        os.sched_setaffinity(0, old)
        os.close(fd)
    return cpu


def http_get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


async def get(url: str) -> tuple[int, bytes, str]:
    return await anyio.to_thread.run_sync(http_get, url)


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> {sorted label pairs: value}, from prometheus_client's parser (which
    reports counters as NAME_total: the name as written in the text is kept)."""
    written = {ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if ln and not ln.startswith("#")}
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = s.name if s.name in written else s.name.removesuffix("_total")
            assert name in written, name
            out.setdefault(name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def ceil_log2(v: int) -> int:
    return 0 if v <= 1 else (v - 1).bit_length()


def expected_hist(values: list[int], index: Any, bounds: list[tuple[int, str]]) -> dict[str, float]:
    """le -> cumulative count for values bucketed by ``index`` (indices outside ``bounds`` are
    not counted), computed here from the workload, independently of the agent."""
    counts: dict[int, int] = {}
    for v in values:
        i = index(v)
        if i is not None:
            counts[i] = counts.get(i, 0) + 1
    out, cum = {}, 0
    for i, le in bounds:
        cum += counts.get(i, 0)
        out[le] = float(cum)
    out["+Inf"] = float(cum)
    return out


def buckets_of(s: dict[str, Any], name: str, **labels: str) -> dict[str, float]:
    want = set(labels.items())
    return {dict(k)["le"]: v for k, v in s[name + "_bucket"].items() if want <= set(k)
            and len(k) == len(want) + 1}


def kernel_prog_ids() -> set[int]:
    from tracekit.kernel.syscalls import bpf

    ids, cur = set(), 0
    while (nxt := bpf.prog_get_next_id(cur)) is not None:
        ids.add(nxt)
        cur = nxt
    return ids


@functools.cache
def my_comm() -> str:
    return Path(f"/proc/self/task/{os.getpid()}/comm").read_text().strip()


@pytest.mark.anyio
async def test_agent_exports_exact_metrics(config_dir: Path) -> None:
    """Counters with decoders, every histogram type, per-CPU maps, a failing probe among
    working ones, self-metrics and /healthz; stopping leaves no program behind."""
    before_fds, before_progs = open_fds(), kernel_prog_ids()
    agent = Agent(config_path=config_dir, listen=("127.0.0.1", 0))
    async with anyio.create_task_group() as tg:
        addr = await tg.start(functools.partial(agent.run, handle_signals=False))
        base = f"http://{addr[0]}:{addr[1]}"
        cpu = workload()
        status, body, ctype = await get(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        text = body.decode()
        s = samples(text)
        hstatus, hbody, _ = await get(base + "/healthz")
        agent_progs = {p.id for rc in agent.probes.values() for p in rc.programs}
        agent.stop()

    # counters: comm via string + regexp (^(py) matches python3/pytest), kind via static_map
    # (2 is not mapped: "unknown:2"), 1 byte + 3 padding
    kinds = {"zero": 0, "one": 0, "unknown:2": 0}
    for v in VALUES:
        kinds[["zero", "one", "unknown:2"][v % 3]] += 1
    assert my_comm().startswith("py")
    assert s["ebpf_exporter_agent_seeks"] == {(("comm", "py"), ("kind", k)): float(n) for k, n in kinds.items()}
    errs = {"EPERM": kinds["zero"], "ENOENT": kinds["one"], "ESRCH": kinds["unknown:2"]}
    assert s["ebpf_exporter_agent_syscalls"] == {
        (("errno", e), ("syscall", "lseek")): float(n) for e, n in errs.items()}
    # kaddrs filled kaddr_vfs_read before load; ksym turns it back into the name; hex of a u32
    assert s["ebpf_exporter_agent_addrs"] == {(("function", "vfs_read"), ("tag", "efbeadde")): 10.0}
    # the counter is not renamed: ebpf_exporter's Go client writes no _total suffix
    assert "# TYPE ebpf_exporter_agent_seeks counter\n" in text
    # series bound 5 of the 10 distinct values: the first 5 in label order, 5 dropped
    assert sorted(dict(k)["value"] for k in s["ebpf_exporter_agent_values"]) == ["0", "1", "100", "1000", "2"]
    assert s["ebpf_exporter_metric_series_dropped_total"][
        (("config", "agent_basic"), ("metric", "agent_values"))] == 5.0

    # histograms: exp2 with a label and a multiplier (le in Go's float format)
    for parity, name in ((0, "even"), (1, "odd")):
        vals = [v for v in VALUES if v % 2 == parity]
        exp = expected_hist(vals, lambda v: min(ceil_log2(v), 12),
                            [(i, le) for i, le in enumerate(
                                ["1e-06", "2e-06", "4e-06", "8e-06", "1.6e-05", "3.2e-05", "6.4e-05", "0.000128",
                                 "0.000256", "0.000512", "0.001024", "0.002048", "0.004096"])])
        assert buckets_of(s, "ebpf_exporter_agent_exp2", parity=name) == exp
        assert s["ebpf_exporter_agent_exp2_sum"][(("parity", name),)] == pytest.approx(sum(vals) * 1e-6)
        assert s["ebpf_exporter_agent_exp2_count"][(("parity", name),)] == float(len(vals))
    exp = expected_hist(VALUES, lambda v: min(0 if v == 0 else ceil_log2(v) + 1, 12),
                        [(i, "0" if i == 0 else str(2 ** (i - 1))) for i in range(13)])
    assert buckets_of(s, "ebpf_exporter_agent_exp2zero") == exp
    assert s["ebpf_exporter_agent_exp2zero_sum"][()] == float(sum(VALUES))
    exp = expected_hist(VALUES, lambda v: min(v // 10, 9), [(i, str(i * 10)) for i in range(10)])
    assert buckets_of(s, "ebpf_exporter_agent_linear") == exp
    assert s["ebpf_exporter_agent_linear_sum"][()] == float(sum(v // 10 for v in VALUES) * 10)
    fixed = [1, 10, 100, 1000]
    exp = expected_hist(VALUES, lambda v: next((k for k in fixed if v <= k), None), [(k, str(k)) for k in fixed])
    assert buckets_of(s, "ebpf_exporter_agent_fixed") == exp
    assert s["ebpf_exporter_agent_fixed_count"][()] == 9.0  # 3000 is past the last key
    assert s["ebpf_exporter_agent_fixed_sum"][()] == float(sum(VALUES))

    # per-CPU: summed; one sample per possible CPU with a cpu label; label + cpu
    from tracekit.kernel.maps import num_possible_cpus

    ncpu = num_possible_cpus()
    assert s["ebpf_exporter_agent_pc_sum"] == {(): 10.0}
    assert s["ebpf_exporter_agent_pc_cpu"] == {
        (("cpu", str(c)),): (10.0 if c == cpu else 0.0) for c in range(ncpu)}
    even = sum(1 for v in VALUES if v % 2 == 0)
    assert s["ebpf_exporter_agent_pc_hash"] == {
        (("cpu", str(c)), ("parity", str(p))): (float(n) if c == cpu else 0.0)
        for c in range(ncpu) for p, n in ((0, even), (1, len(VALUES) - even))}

    # the half-attached probe runs and says which program is not attached; the config
    # naming a missing map is down; the others are up
    assert s["ebpf_exporter_agent_broken_hits"] == {(): 10.0}
    up = {dict(k)["config"]: v for k, v in s["ebpf_exporter_config_up"].items()}
    assert up == {"agent_basic": 1.0, "agent_hist": 1.0, "agent_percpu": 1.0, "agent_broken": 1.0,
                  "agent_missing_map": 0.0}
    assert {dict(k)["name"] for k in s["ebpf_exporter_enabled_configs"]} == set(up) - {"agent_missing_map"}
    info = {dict(k)["program"]: dict(k) for k in s["ebpf_exporter_ebpf_program_info"]}
    assert set(info) == {"count_seeks", "hist_seeks", "percpu_seeks", "broken_ok", "broken_attach"}
    attached = {dict(k)["id"]: v for k, v in s["ebpf_exporter_ebpf_program_attached"].items()}
    assert {p: attached[i["id"]] for p, i in info.items()} == {
        "count_seeks": 1.0, "hist_seeks": 1.0, "percpu_seeks": 1.0, "broken_ok": 1.0, "broken_attach": 0.0}
    assert all(len(i["tag"]) == 16 for i in info.values())
    errors = {dict(k)["config"]: v for k, v in s["ebpf_exporter_config_errors_total"].items()}
    assert errors["agent_broken"] == 1.0 and errors["agent_missing_map"] == 1.0 and errors["agent_basic"] == 0.0
    assert set(s["ebpf_exporter_decoder_errors_total"].values()) == {0.0}
    assert s["process_open_fds"][()] > 0 and s["process_resident_memory_bytes"][()] > 0
    # no run-time families unless BPF stats were asked for
    assert "ebpf_exporter_ebpf_program_run_count_total" not in s

    assert hstatus == 503
    h = json.loads(hbody)
    assert h["status"] == "degraded"
    assert h["configs"]["agent_missing_map"]["up"] is False
    assert "agent_no_such_map" in h["configs"]["agent_missing_map"]["error"]
    assert h["configs"]["agent_broken"]["programs"]["broken_attach"]["attached"] is False
    assert h["configs"]["agent_hist"]["programs"]["hist_seeks"]["attached"] is True

    # stopped: every program of the agent is gone from the kernel, no fd left open
    assert not (agent_progs & kernel_prog_ids())
    assert agent_progs and agent_progs.isdisjoint(before_progs)
    assert open_fds() <= before_fds | {f for f in open_fds() if not os.path.exists(f"/proc/self/fd/{f}")}


def test_exposition_layout_matches_ebpf_exporter(config_dir: Path) -> None:
    """Families sorted by name, HELP/TYPE lines, histogram lines in le order with +Inf,
    _sum, _count; label pairs sorted with le last."""
    agent = Agent(config_path=config_dir, names=["agent_hist"], listen=None)
    agent.start()
    try:
        workload([0, 1, 2])
        text = agent.scrape().decode()
    finally:
        agent.close()
    lines = text.splitlines()
    assert lines[:3] == ["# HELP ebpf_exporter_agent_exp2 Workload values, exp2 buckets in microseconds",
                         "# TYPE ebpf_exporter_agent_exp2 histogram",
                         'ebpf_exporter_agent_exp2_bucket{parity="even",le="1e-06"} 1']
    i = lines.index('ebpf_exporter_agent_exp2_bucket{parity="even",le="+Inf"} 2')
    assert lines[i - 1] == 'ebpf_exporter_agent_exp2_bucket{parity="even",le="0.004096"} 2'
    assert lines[i + 1:i + 3] == ['ebpf_exporter_agent_exp2_sum{parity="even"} 2e-06',
                                  'ebpf_exporter_agent_exp2_count{parity="even"} 2']
    names = [ln.split()[2] for ln in lines if ln.startswith("# TYPE")]
    assert names == sorted(names)


def test_strict_makes_a_failure_fatal(tmp_path: Path) -> None:
    require_live()
    from tracekit.errors import AttachError

    d = make_config_dir(tmp_path / "c", ["agent_hist", "agent_broken"])
    before = kernel_prog_ids()
    agent = Agent(config_path=d, listen=None, strict=True)
    with pytest.raises(AttachError, match="no_such_event"):
        agent.start()
    assert agent.probes == {}
    # nothing of ours survives: no new program with our names (other tests may load theirs)
    assert not {"hist_seeks", "broken_ok", "broken_attach"} & prog_names(kernel_prog_ids() - before)


def _prog_ids(agent: Agent) -> dict[str, set[int]]:
    return {n: {p.id for p in rc.programs} for n, rc in agent.probes.items()}


def test_reload_keeps_unchanged_probes(tmp_path: Path) -> None:
    """A reload loads added configs, restarts changed ones, closes removed ones and leaves
    the unchanged ones running with their maps (their counts survive)."""
    require_live()
    d = make_config_dir(tmp_path / "c", ["agent_basic", "agent_hist", "agent_percpu"])
    agent = Agent(config_path=d, listen=None)
    agent.start()
    try:
        workload()
        ids = _prog_ids(agent)
        (d / "agent_percpu.yaml").unlink()
        text = (d / "agent_hist.yaml").read_text().replace("exp2zero buckets", "exp2zero buckets (changed)")
        (d / "agent_hist.yaml").write_text(text)
        make_config_dir(d, ["agent_broken"])
        out = agent.reload()
        assert out == {"added": ["agent_broken"], "removed": ["agent_percpu"], "changed": ["agent_hist"],
                       "unchanged": ["agent_basic"]}
        new_ids = _prog_ids(agent)
        assert new_ids["agent_basic"] == ids["agent_basic"]  # not reloaded
        assert new_ids["agent_hist"].isdisjoint(ids["agent_hist"])  # restarted
        assert not (ids["agent_percpu"] & kernel_prog_ids())  # removed from the kernel
        s = samples(agent.scrape().decode())
        assert "ebpf_exporter_agent_pc_sum" not in s
        assert sum(s["ebpf_exporter_agent_seeks"].values()) == 10.0  # counts kept across the reload
        assert s["ebpf_exporter_agent_exp2zero_count"][()] == 0.0  # a fresh map
        assert s["ebpf_exporter_agent_broken_hits"] == {(): 0.0}
    finally:
        agent.close()
    assert not (set().union(*_prog_ids(agent).values(), *ids.values()) & kernel_prog_ids())


def prog_names(ids: set[int]) -> set[str]:
    from tracekit.errors import TracekitError
    from tracekit.kernel.syscalls import bpf

    names = set()
    for i in ids:
        try:
            fd = bpf.prog_get_fd_by_id(i)
        except TracekitError:
            continue  # gone meanwhile
        try:
            names.add(bpf.prog_info(fd.fd).name)
        finally:
            fd.close()
    return names
