"""The agent's decoders, config parsing and number formatting on exact bytes (no kernel
needed except where marked: kallsyms, network interfaces and partitions of this host)."""

from __future__ import annotations

import errno
import socket
import struct
import sys
from pathlib import Path

import pytest

from tracekit.agent import collector, decoders
from tracekit.agent.config import parse_config, parse_duration
from tracekit.agent.decoders import DecoderSpec, SkipSample, compile_decoder, decode_chain
from tracekit.errors import AgentConfigError, DecoderError


def dec(data: bytes, *specs: DecoderSpec) -> str:
    return decode_chain(data, [compile_decoder(s) for s in specs])[0]


def D(name: str, **kw: object) -> DecoderSpec:
    return DecoderSpec(name, **kw)  # type: ignore[arg-type]


def test_uint_sizes_and_errors() -> None:
    assert dec(b"\x05", D("uint")) == "5"
    assert dec(struct.pack("=H", 515), D("uint")) == "515"
    assert dec(struct.pack("=I", 70000), D("uint")) == "70000"
    assert dec(struct.pack("=Q", 2 ** 63), D("uint")) == str(2 ** 63)
    with pytest.raises(DecoderError, match="3 bytes"):
        dec(b"abc", D("uint"))


def test_string_hex_static_map_regexp() -> None:
    assert dec(b"bash\0junk\0", D("string")) == "bash"
    assert dec(b"\x00\xab\x10", D("hex")) == "00ab10"
    m = {"1": "read", "2": "write"}
    assert dec(b"\x01", D("uint"), D("static_map", static_map=m)) == "read"
    assert dec(b"\x03", D("uint"), D("static_map", static_map=m)) == "unknown:3"
    assert dec(b"\x03", D("uint"), D("static_map", static_map=m, allow_unknown=True)) == "3"
    assert dec(b"\x03", D("uint"), D("static_map")) == "empty mapping"
    rx = D("regexp", regexps=("^(a)(b)", "^systemd-(\\w+)", "^kworker"))
    assert dec(b"systemd-journald\0", D("string"), rx) == "journald"  # 2-group regexp passed over
    assert dec(b"kworker/0:1\0", D("string"), rx) == "kworker"  # no group: the whole match
    with pytest.raises(SkipSample):
        dec(b"bash\0", D("string"), rx)
    with pytest.raises(DecoderError, match="unknown decoder 'nope'"):
        compile_decoder(D("nope"))


def test_syscall_and_errno_tables() -> None:
    u = struct.pack("=I", 0)
    assert dec(u, D("uint"), D("syscall")) == "read"
    # our table is the kernel's uapi names (ebpf_exporter's says poll_time64 / clock_gettime64)
    assert [dec(struct.pack("=I", n), D("uint"), D("syscall")) for n in (7, 35, 228, 257, 435)] == [
        "poll", "nanosleep", "clock_gettime", "openat", "clone3"]
    assert dec(struct.pack("=I", 9999), D("uint"), D("syscall")) == "unknown_syscall:9999"
    assert dec(struct.pack("=I", errno.ENOENT), D("uint"), D("errno")) == "ENOENT"
    assert [dec(struct.pack("=I", n), D("uint"), D("errno")) for n in (35, 95, 117, 133)] == [
        "EDEADLK", "EOPNOTSUPP", "EUCLEAN", "EHWPOISON"]  # 117: ebpf_exporter says EFSCORRUPTED
    assert dec(struct.pack("=I", 4000), D("uint"), D("errno")) == "unknown:4000"
    with pytest.raises(DecoderError, match="uint decoder before it"):
        dec(b"\x01\x02", D("syscall"))


def test_inet_ip_dname() -> None:
    assert dec(bytes([10, 0, 0, 1]), D("inet_ip")) == "10.0.0.1"
    assert dec(socket.inet_pton(socket.AF_INET6, "2001:db8::1"), D("inet_ip")) == "2001:db8::1"
    assert dec(socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.7"), D("inet_ip")) == "192.0.2.7"
    assert dec(b"\x01\x02\x03", D("inet_ip")) == "?010203"
    assert dec(b"\x03www\x07example\x03com\x00", D("dname")) == "www.example.com"
    assert dec(b"\x00", D("dname")) == "."
    assert dec(b"\x05ab", D("dname")) == "\x05ab"  # runs past the end: unchanged


def test_majorminor_and_ifname_on_this_host() -> None:
    parts = Path("/proc/partitions").read_text().split("\n")[2:]
    rows = [r.split() for r in parts if len(r.split()) == 4]
    if rows:
        major, minor, _, name = rows[0]
        ma, mi = int(major), int(minor)
        dev = (mi & 0xFF) | (ma << 8) | ((mi & ~0xFF) << 12)
        assert dec(struct.pack("=I", dev), D("majorminor")) == name
    assert dec(struct.pack("=I", (4095 << 8) | 255), D("majorminor")) == "unknown:4095:255"
    assert dec(struct.pack("=I", socket.if_nametoindex("lo")), D("ifname")) == "lo"
    assert dec(struct.pack("=I", 999999), D("ifname")) == "unknown:999999"


def test_pci_ids_parse_and_fallback() -> None:
    db = decoders.parse_pci_ids("# comment\n8086  Intel Corporation\n\t1237  440FX - 82441FX PMC [Natoma]\n"
                                "\t\t1af4 1100  Qemu virtual machine\nC 02  Network controller\n"
                                "\t00  Ethernet controller\n")
    assert db.vendors == {0x8086: "Intel Corporation"}
    assert db.devices == {0x80861237: "440FX - 82441FX PMC [Natoma]"}
    assert db.classes == {2: "Network controller"} and db.subclasses == {0x200: "Ethernet controller"}
    if decoders._pci_db() is None:  # this host has no pci.ids: hex, as documented
        assert dec(struct.pack("=I", 0x8086), D("uint"), D("pci_vendor")) == "0x8086"


@pytest.mark.live
def test_ksym_and_kstack_with_kallsyms() -> None:
    from tests.support import require_live
    from tracekit.symbols import kernel_symbols

    require_live()
    sym = kernel_symbols().symbol("vfs_read")
    assert sym is not None
    assert dec(struct.pack("=Q", sym.addr), D("ksym")) == "vfs_read"
    assert dec(struct.pack("=Q", sym.addr + 1), D("ksym")) == f"unknown_addr:0x{sym.addr + 1:x}"
    stack = struct.pack("=QQQ", sym.addr + 4, sym.addr, 0) + struct.pack("=Q", sym.addr)
    assert dec(stack, D("kstack")) == "vfs_read\nvfs_read"  # stops at the first 0


def test_go_float_and_parse_uint() -> None:
    assert [collector.go_float(f) for f in (0, 1, 15108, 999999, 1e6, 1234567, 1e-6, 1.6e-5, 0.000128,
                                            134.217728, 0.022581999999999998, float("inf"))] == [
        "0", "1", "15108", "999999", "1e+06", "1.234567e+06", "1e-06", "1.6e-05", "0.000128", "134.217728",
        "0.022581999999999998", "+Inf"]
    assert [collector.go_parse_uint(s) for s in ("10", "0x10", "010", "0b11", "0")] == [10, 16, 8, 3, 0]
    with pytest.raises(ValueError):
        collector.go_parse_uint("-1")


YAML = """
metrics:
  counters:
    - name: c
      help: h
      flush_interval: 1m30s
      whatever: ignored
      labels:
        - name: k
          size: 4
          decoders:
            - name: uint
            - name: static_map
              static_map:
                0x10: yes
                01: "x"
  histograms:
    - name: h
      help: hh
      bucket_type: fixed
      bucket_keys: [1, 2.5]
      labels:
        - name: b
          size: 8
          decoders: [{name: uint}]
tracing:
  spans: []
"""


def test_yaml_config_as_ebpf_exporter_reads_it() -> None:
    cfg = parse_config("t", YAML, Path("t.bpf.o"))
    c = cfg.counters[0]
    assert c.flush_interval == 90.0
    # static_map keys and values are the scalar text as written
    assert c.labels[0].decoders[1].static_map == {"0x10": "yes", "01": "x"}
    h = cfg.histograms[0]
    assert h.bucket_keys == (1.0, 2.5) and h.bucket_multiplier == 1.0 and h.labels[0].size == 8
    assert parse_duration("500ms") == 0.5
    with pytest.raises(AgentConfigError, match="no metrics"):
        parse_config("t", "metrics: {}\n", Path("t.bpf.o"))
    with pytest.raises(AgentConfigError, match="bucket_type 'log'"):
        parse_config("t", YAML.replace("fixed", "log"), Path("t.bpf.o"))
    with pytest.raises(AgentConfigError, match="'size'"):
        parse_config("t", YAML.replace("          size: 4\n", ""), Path("t.bpf.o"))
    with pytest.raises(AgentConfigError, match="unknown decoder"):
        parse_config("t", YAML.replace("{name: uint}", "{name: uint64}"), Path("t.bpf.o"))


def test_little_endian_host() -> None:
    # the decoders read host order, as ebpf_exporter; the tables above assume x86-64
    assert sys.byteorder == "little"
