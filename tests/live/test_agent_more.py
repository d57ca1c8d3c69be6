"""More of the agent against the kernel: the perf_event/... section convention, cgroup_id_map
with the cgroup decoder, a Python-declared probe (a tracekit.Probe with a knob), BPF
run-time stats, and decoder errors counted while the other metrics are still served."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.live.test_agent import CONFIGS, MAGIC, make_config_dir, samples, workload
from tests.support import build_bpf_object, require_live
from tracekit.agent import Agent, CgroupIdMap, Config, Counter, Decoder, Label
from tracekit.agent.decoders import cgroup2_root

pytestmark = pytest.mark.live


def _dir(tmp: Path, name: str, src: str, yaml_text: str | None = None) -> Path:
    d = tmp / "c"
    d.mkdir(exist_ok=True)
    shutil.copy(build_bpf_object(src), d / f"{name}.bpf.o")
    (d / f"{name}.yaml").write_text(yaml_text if yaml_text is not None else (CONFIGS / f"{name}.yaml").read_text())
    return d


def test_perf_event_section_samples_per_cpu(tmp_path: Path) -> None:
    """SEC("perf_event/type=1,config=0,frequency=99") is attached on every CPU; a CPU kept
    busy for 0.5 s gets ~50 samples, labelled with its index."""
    require_live()
    d = _dir(tmp_path, "agent_perf", "agent_perf.bpf.c")
    agent = Agent(config_path=d, listen=None)
    agent.start()
    try:
        assert [p.attached for p in agent.probes["agent_perf"].programs] == [True]
        cpu = sorted(os.sched_getaffinity(0))[0]
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            end = time.perf_counter() + 0.5
            while time.perf_counter() < end:
                pass
        finally:
            os.sched_setaffinity(0, old)
        s = samples(agent.scrape().decode())
    finally:
        agent.close()
    n = s["ebpf_exporter_agent_perf_samples"][(("cpu", str(cpu)),)]
    assert 25 <= n <= 75, n


@pytest.fixture
def test_cgroup() -> object:
    require_live()
    cg = Path(cgroup2_root()) / f"tk-agent-test-{os.getpid()}"
    cg.mkdir()
    try:
        yield cg
    finally:
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def seek_in_cgroup(cg: Path, values: list[int]) -> None:
    code = (f"import os; open({str(cg / 'cgroup.procs')!r}, 'w').write(str(os.getpid())); "
            f"fd = os.open('/dev/null', os.O_RDONLY); [os.lseek(fd, {MAGIC} + v, 0) for v in {values!r}]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cgroup_id_map_and_cgroup_decoder(tmp_path: Path, test_cgroup: Path) -> None:
    """The agent puts the matching cgroup's id in the probe's filter map; seeks from a
    process in that cgroup are counted and decoded back to the cgroup's path, seeks from
    elsewhere (this process) are not."""
    d = _dir(tmp_path, "agent_cgroup", "agent_cgroup.bpf.c")
    agent = Agent(config_path=d, listen=None)
    agent.start()
    try:
        workload()  # not in the cgroup: filtered out in the kernel
        seek_in_cgroup(test_cgroup, [1, 2, 3, 4])
        s = samples(agent.scrape().decode())
    finally:
        agent.close()
    assert s["ebpf_exporter_agent_cg_seeks"] == {(("cgroup", str(test_cgroup)),): 4.0}


def test_python_declared_probe(tmp_path: Path, test_cgroup: Path) -> None:
    """A Config declared in Python around a tracekit.Probe: its knob is written before load
    (weight 3 triples the counts), the agent exports the map it names."""
    from tracekit.probe import Probe

    class CgSeeks(Probe[bytes]):
        object = str(build_bpf_object("agent_cgroup.bpf.c"))
        event = None
        weight: int = 1

    cfg = Config("cg_py", object=CgSeeks(weight=3), counters=[
        Counter("agent_cg_seeks", "seeks by cgroup (Python)",
                labels=[Label("cgroup", 8, [Decoder("uint"), Decoder("cgroup")])])],
        cgroup_id_map=CgroupIdMap("agent_cgroups", "hash", [f"/{test_cgroup.name}$"]))
    agent = Agent([cfg], listen=None, bpf_stats=True)
    agent.start()
    try:
        seek_in_cgroup(test_cgroup, [5, 6])
        text = agent.scrape().decode()
        prog_id = agent.probes["cg_py"].programs[0].id
    finally:
        agent.close()
    s = samples(text)
    assert s["ebpf_exporter_agent_cg_seeks"] == {(("cgroup", str(test_cgroup)),): 6.0}
    assert s["ebpf_exporter_enabled_configs"] == {(("name", "cg_py"),): 1.0}
    # BPF stats on: the program ran (at least for the 2 seeks; every lseek on the machine counts)
    assert s["ebpf_exporter_ebpf_program_run_count_total"][(("id", str(prog_id)),)] >= 2
    assert s["ebpf_exporter_ebpf_program_run_time_seconds"][(("id", str(prog_id)),)] > 0


def test_decoder_errors_are_counted_and_others_served(tmp_path: Path) -> None:
    """A label layout that does not add up and a uint over a 3-byte field: those metrics are
    left out of each scrape and counted in ebpf_exporter_decoder_errors_total; the rest of
    the config is still exported."""
    require_live()
    text = (CONFIGS / "agent_basic.yaml").read_text()
    # agent_syscalls: the errno label 4 -> 3 bytes + 1 padding: the layout adds up, but
    # uint cannot read 3 bytes (a decoder error per scrape)
    text = text.replace("        - name: errno\n          size: 4\n",
                        "        - name: errno\n          size: 3\n          padding: 1\n")
    # agent_addrs: the tag's padding dropped: 12 of 16 bytes, a layout error
    text = text.replace("          size: 4\n          padding: 4\n", "          size: 4\n")
    d = _dir(tmp_path, "agent_basic", "agent_basic.bpf.c", text)
    agent = Agent(config_path=d, listen=None)
    agent.start()
    try:
        workload()
        agent.scrape()
        s = samples(agent.scrape().decode())
    finally:
        agent.close()
    assert "ebpf_exporter_agent_syscalls" not in s and "ebpf_exporter_agent_addrs" not in s
    assert sum(s["ebpf_exporter_agent_seeks"].values()) == 10.0
    # two scrapes x two broken metrics
    assert s["ebpf_exporter_decoder_errors_total"] == {(("config", "agent_basic"),): 4.0}


def test_config_names_select(tmp_path: Path) -> None:
    require_live()
    d = make_config_dir(tmp_path / "c", ["agent_hist", "agent_percpu"])
    agent = Agent(config_path=d, names=["agent_percpu"], listen=None)
    agent.start()
    try:
        assert list(agent.probes) == ["agent_percpu"]
    finally:
        agent.close()


def test_perf_event_array_counter(tmp_path: Path) -> None:
    """perf_event_array: true: each record adds 1 to the series of its decoded labels."""
    require_live()
    d = _dir(tmp_path, "agent_perfarray", "agent_perfarray.bpf.c")
    agent = Agent(config_path=d, listen=None)
    agent.start()
    try:
        workload()
        first = samples(agent.scrape().decode())
        workload([0, 3])
        second = samples(agent.scrape().decode())
    finally:
        agent.close()
    from tests.live.test_agent import VALUES

    want = {"zero": 0, "1": 0, "2": 0}
    for v in VALUES:
        want[["zero", "1", "2"][v % 3]] += 1
    assert first["ebpf_exporter_agent_pe_seeks"] == {(("kind", k),): float(n) for k, n in want.items()}
    want["zero"] += 2
    assert second["ebpf_exporter_agent_pe_seeks"] == {(("kind", k),): float(n) for k, n in want.items()}


def test_bad_yaml_is_down_and_a_fixed_config_comes_up_on_reload(tmp_path: Path) -> None:
    """An unreadable config is reported down (metrics, /healthz) while the others run; once
    fixed, a reload brings it up; a config that failed to load is retried by a reload."""
    require_live()
    from tracekit.agent import health

    d = make_config_dir(tmp_path / "c", ["agent_percpu"])
    shutil.copy(build_bpf_object("agent_hist.bpf.c"), d / "agent_hist.bpf.o")
    (d / "agent_hist.yaml").write_text("metrics: [unclosed\n")
    agent = Agent(config_path=d, listen=None)
    agent.start()
    try:
        s = samples(agent.scrape().decode())
        assert s["ebpf_exporter_config_up"] == {(("config", "agent_hist"),): 0.0, (("config", "agent_percpu"),): 1.0}
        status, body = health.health(agent)
        assert status == 503 and "not valid YAML" in json.loads(body)["configs"]["agent_hist"]["error"]
        shutil.copy(CONFIGS / "agent_hist.yaml", d / "agent_hist.yaml")
        out = agent.reload()
        assert out["changed"] == ["agent_hist"] and out["unchanged"] == ["agent_percpu"]
        assert health.health(agent)[0] == 200
        s = samples(agent.scrape().decode())
        assert s["ebpf_exporter_config_errors_total"][(("config", "agent_hist"),)] == 1.0
        assert s["ebpf_exporter_agent_exp2zero_count"] == {(): 0.0}
    finally:
        agent.close()
