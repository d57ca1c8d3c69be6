"""``SEC("...")`` names -> program type, expected attach type and how to attach.

The section name is the only place a BPF C program says what it is, so tracekit reads it
exactly as libbpf's section table does (same prefixes, same matching rules) and objects
written for libbpf open unchanged:

* ``"name+"`` entries match ``name`` alone or ``name/<target>``;
* ``"name/"`` entries need a ``/`` and match any text after it;
* other entries match exactly.

A leading ``?`` (``SEC("?tp/...")``) marks a program that is not loaded by default, as in
libbpf.  The first matching row wins, so more specific rows come first.
"""

from __future__ import annotations

from tracekit._record import FrozenRecord
from tracekit.errors import SectionError
from tracekit.uapi import AttachType as AT
from tracekit.uapi import ProgType as PT


class SectionDef(FrozenRecord):
    """What a section name says about its programs (immutable; a plain class rather than a
    dataclass: see tracekit._record)."""

    __slots__ = ("section", "prefix", "prog_type", "expected_attach_type", "attach_kind", "attach_target",
                 "sleepable", "needs_attach_btf", "autoload", "xdp_frags")
    _fields = __slots__
    section: str  # the full section name, without a leading "?"
    prefix: str  # the table row that matched, e.g. "tracepoint", "fentry.s", "cgroup_skb/ingress"
    prog_type: int
    expected_attach_type: int
    #: how the loader auto-attaches it: "tracepoint", "raw_tp", "tp_btf", "fentry", "fexit",
    #: "fmod_ret", "kprobe", "kretprobe", "ksyscall", "kretsyscall", "kprobe.multi",
    #: "kretprobe.multi", "uprobe", "uretprobe", "uprobe.multi", "uretprobe.multi", "usdt",
    #: "perf_event", "syscall", "iter", "lsm", "xdp", "tc", "socket", "cgroup", ...;
    #: "" for program kinds only attachable by hand.
    attach_kind: str
    attach_target: str  # text after "prefix/", e.g. "syscalls/sys_enter_execve" ("" if none)
    sleepable: bool
    needs_attach_btf: bool  # the kernel wants attach_btf_id (tp_btf/fentry/fexit/fmod_ret/lsm/iter)
    autoload: bool  # False for "?"-prefixed sections
    xdp_frags: bool

    def __init__(self, section: str, prefix: str, prog_type: int, expected_attach_type: int, attach_kind: str,
                 attach_target: str, sleepable: bool = False, needs_attach_btf: bool = False,
                 autoload: bool = True, xdp_frags: bool = False) -> None:
        s = object.__setattr__
        s(self, "section", section)
        s(self, "prefix", prefix)
        s(self, "prog_type", prog_type)
        s(self, "expected_attach_type", expected_attach_type)
        s(self, "attach_kind", attach_kind)
        s(self, "attach_target", attach_target)
        s(self, "sleepable", sleepable)
        s(self, "needs_attach_btf", needs_attach_btf)
        s(self, "autoload", autoload)
        s(self, "xdp_frags", xdp_frags)

    @property
    def auto_attach(self) -> bool:
        """Whether the section says enough to attach without more input.

        Tracing kinds need a target (``kprobe/do_exit``, not bare ``kprobe``); ``syscall``
        programs are run, not attached; perf_event programs need a perf event to attach to.
        """
        if not self.attach_kind or self.attach_kind in ("syscall", "socket", "xdp", "tc", "cgroup"):
            return False
        # perf_event: only with ebpf_exporter's "perf_event/type=T,config=C,frequency=F" form
        return bool(self.attach_target)


# flags for table rows
_SLEEP = 1
_BTF = 2
_FRAGS = 4

# (pattern, prog type, expected attach type, attach kind, flags) -- order matters.
_TABLE: list[tuple[str, int, int, str, int]] = [
    ("socket", PT.SOCKET_FILTER, 0, "socket", 0),
    ("sk_reuseport/migrate", PT.SK_REUSEPORT, AT.SK_REUSEPORT_SELECT_OR_MIGRATE, "", 0),
    ("sk_reuseport", PT.SK_REUSEPORT, AT.SK_REUSEPORT_SELECT, "", 0),
    ("kprobe+", PT.KPROBE, 0, "kprobe", 0),
    ("uprobe+", PT.KPROBE, 0, "uprobe", 0),
    ("uprobe.s+", PT.KPROBE, 0, "uprobe", _SLEEP),
    ("kretprobe+", PT.KPROBE, 0, "kretprobe", 0),
    ("uretprobe+", PT.KPROBE, 0, "uretprobe", 0),
    ("uretprobe.s+", PT.KPROBE, 0, "uretprobe", _SLEEP),
    ("kprobe.multi+", PT.KPROBE, AT.TRACE_KPROBE_MULTI, "kprobe.multi", 0),
    ("kretprobe.multi+", PT.KPROBE, AT.TRACE_KPROBE_MULTI, "kretprobe.multi", 0),
    ("kprobe.session+", PT.KPROBE, AT.TRACE_KPROBE_SESSION, "kprobe.session", 0),
    ("uprobe.multi+", PT.KPROBE, AT.TRACE_UPROBE_MULTI, "uprobe.multi", 0),
    ("uretprobe.multi+", PT.KPROBE, AT.TRACE_UPROBE_MULTI, "uretprobe.multi", 0),
    ("uprobe.session+", PT.KPROBE, AT.TRACE_UPROBE_SESSION, "uprobe.session", 0),
    ("uprobe.multi.s+", PT.KPROBE, AT.TRACE_UPROBE_MULTI, "uprobe.multi", _SLEEP),
    ("uretprobe.multi.s+", PT.KPROBE, AT.TRACE_UPROBE_MULTI, "uretprobe.multi", _SLEEP),
    ("uprobe.session.s+", PT.KPROBE, AT.TRACE_UPROBE_SESSION, "uprobe.session", _SLEEP),
    ("ksyscall+", PT.KPROBE, 0, "ksyscall", 0),
    ("kretsyscall+", PT.KPROBE, 0, "kretsyscall", 0),
    ("usdt+", PT.KPROBE, 0, "usdt", 0),
    ("usdt.s+", PT.KPROBE, 0, "usdt", _SLEEP),
    ("tc/ingress", PT.SCHED_CLS, AT.TCX_INGRESS, "tc", 0),
    ("tc/egress", PT.SCHED_CLS, AT.TCX_EGRESS, "tc", 0),
    ("tcx/ingress", PT.SCHED_CLS, AT.TCX_INGRESS, "tc", 0),
    ("tcx/egress", PT.SCHED_CLS, AT.TCX_EGRESS, "tc", 0),
    ("tc", PT.SCHED_CLS, 0, "tc", 0),
    ("classifier", PT.SCHED_CLS, 0, "tc", 0),
    ("action", PT.SCHED_ACT, 0, "", 0),
    ("netkit/primary", PT.SCHED_CLS, AT.NETKIT_PRIMARY, "", 0),
    ("netkit/peer", PT.SCHED_CLS, AT.NETKIT_PEER, "", 0),
    ("tracepoint+", PT.TRACEPOINT, 0, "tracepoint", 0),
    ("tp+", PT.TRACEPOINT, 0, "tracepoint", 0),
    ("tracepoint.s+", PT.TRACEPOINT, 0, "tracepoint", _SLEEP),
    ("tp.s+", PT.TRACEPOINT, 0, "tracepoint", _SLEEP),
    ("raw_tracepoint+", PT.RAW_TRACEPOINT, 0, "raw_tp", 0),
    ("raw_tp+", PT.RAW_TRACEPOINT, 0, "raw_tp", 0),
    ("raw_tracepoint.s+", PT.RAW_TRACEPOINT, 0, "raw_tp", _SLEEP),
    ("raw_tp.s+", PT.RAW_TRACEPOINT, 0, "raw_tp", _SLEEP),
    ("raw_tracepoint.w+", PT.RAW_TRACEPOINT_WRITABLE, 0, "raw_tp", 0),
    ("raw_tp.w+", PT.RAW_TRACEPOINT_WRITABLE, 0, "raw_tp", 0),
    ("tp_btf+", PT.TRACING, AT.TRACE_RAW_TP, "tp_btf", _BTF),
    ("tp_btf.s+", PT.TRACING, AT.TRACE_RAW_TP, "tp_btf", _BTF | _SLEEP),
    ("fentry+", PT.TRACING, AT.TRACE_FENTRY, "fentry", _BTF),
    ("fmod_ret+", PT.TRACING, AT.MODIFY_RETURN, "fmod_ret", _BTF),
    ("fexit+", PT.TRACING, AT.TRACE_FEXIT, "fexit", _BTF),
    ("fentry.s+", PT.TRACING, AT.TRACE_FENTRY, "fentry", _BTF | _SLEEP),
    ("fmod_ret.s+", PT.TRACING, AT.MODIFY_RETURN, "fmod_ret", _BTF | _SLEEP),
    ("fexit.s+", PT.TRACING, AT.TRACE_FEXIT, "fexit", _BTF | _SLEEP),
    ("freplace+", PT.EXT, 0, "", _BTF),
    ("lsm+", PT.LSM, AT.LSM_MAC, "lsm", _BTF),
    ("lsm.s+", PT.LSM, AT.LSM_MAC, "lsm", _BTF | _SLEEP),
    ("lsm_cgroup+", PT.LSM, AT.LSM_CGROUP, "", _BTF),
    ("iter+", PT.TRACING, AT.TRACE_ITER, "iter", _BTF),
    ("iter.s+", PT.TRACING, AT.TRACE_ITER, "iter", _BTF | _SLEEP),
    ("syscall", PT.SYSCALL, 0, "syscall", _SLEEP),
    ("xdp.frags/devmap", PT.XDP, AT.XDP_DEVMAP, "", _FRAGS),
    ("xdp/devmap", PT.XDP, AT.XDP_DEVMAP, "", 0),
    ("xdp.frags/cpumap", PT.XDP, AT.XDP_CPUMAP, "", _FRAGS),
    ("xdp/cpumap", PT.XDP, AT.XDP_CPUMAP, "", 0),
    ("xdp.frags", PT.XDP, AT.XDP, "xdp", _FRAGS),
    ("xdp", PT.XDP, AT.XDP, "xdp", 0),
    ("perf_event+", PT.PERF_EVENT, 0, "perf_event", 0),  # "+": perf_event/type=T,config=C,...
    ("lwt_in", PT.LWT_IN, 0, "", 0),
    ("lwt_out", PT.LWT_OUT, 0, "", 0),
    ("lwt_xmit", PT.LWT_XMIT, 0, "", 0),
    ("sockops", PT.SOCK_OPS, AT.CGROUP_SOCK_OPS, "cgroup", 0),
    ("sk_skb/stream_parser", PT.SK_SKB, AT.SK_SKB_STREAM_PARSER, "", 0),
    ("sk_skb/stream_verdict", PT.SK_SKB, AT.SK_SKB_STREAM_VERDICT, "", 0),
    ("sk_skb/verdict", PT.SK_SKB, AT.SK_SKB_VERDICT, "", 0),
    ("sk_skb", PT.SK_SKB, 0, "", 0),
    ("sk_msg", PT.SK_MSG, AT.SK_MSG_VERDICT, "", 0),
    ("flow_dissector", PT.FLOW_DISSECTOR, AT.FLOW_DISSECTOR, "", 0),
    ("cgroup_skb/ingress", PT.CGROUP_SKB, AT.CGROUP_INET_INGRESS, "cgroup", 0),
    ("cgroup_skb/egress", PT.CGROUP_SKB, AT.CGROUP_INET_EGRESS, "cgroup", 0),
    ("cgroup/skb", PT.CGROUP_SKB, 0, "", 0),
    ("cgroup/sock_create", PT.CGROUP_SOCK, AT.CGROUP_INET_SOCK_CREATE, "cgroup", 0),
    ("cgroup/sock_release", PT.CGROUP_SOCK, AT.CGROUP_INET_SOCK_RELEASE, "cgroup", 0),
    ("cgroup/sock", PT.CGROUP_SOCK, AT.CGROUP_INET_SOCK_CREATE, "cgroup", 0),
    ("cgroup/post_bind4", PT.CGROUP_SOCK, AT.CGROUP_INET4_POST_BIND, "cgroup", 0),
    ("cgroup/post_bind6", PT.CGROUP_SOCK, AT.CGROUP_INET6_POST_BIND, "cgroup", 0),
    ("cgroup/bind4", PT.CGROUP_SOCK_ADDR, AT.CGROUP_INET4_BIND, "cgroup", 0),
    ("cgroup/bind6", PT.CGROUP_SOCK_ADDR, AT.CGROUP_INET6_BIND, "cgroup", 0),
    ("cgroup/connect4", PT.CGROUP_SOCK_ADDR, AT.CGROUP_INET4_CONNECT, "cgroup", 0),
    ("cgroup/connect6", PT.CGROUP_SOCK_ADDR, AT.CGROUP_INET6_CONNECT, "cgroup", 0),
    ("cgroup/connect_unix", PT.CGROUP_SOCK_ADDR, AT.CGROUP_UNIX_CONNECT, "cgroup", 0),
    ("cgroup/sendmsg4", PT.CGROUP_SOCK_ADDR, AT.CGROUP_UDP4_SENDMSG, "cgroup", 0),
    ("cgroup/sendmsg6", PT.CGROUP_SOCK_ADDR, AT.CGROUP_UDP6_SENDMSG, "cgroup", 0),
    ("cgroup/sendmsg_unix", PT.CGROUP_SOCK_ADDR, AT.CGROUP_UNIX_SENDMSG, "cgroup", 0),
    ("cgroup/recvmsg4", PT.CGROUP_SOCK_ADDR, AT.CGROUP_UDP4_RECVMSG, "cgroup", 0),
    ("cgroup/recvmsg6", PT.CGROUP_SOCK_ADDR, AT.CGROUP_UDP6_RECVMSG, "cgroup", 0),
    ("cgroup/recvmsg_unix", PT.CGROUP_SOCK_ADDR, AT.CGROUP_UNIX_RECVMSG, "cgroup", 0),
    ("cgroup/getpeername4", PT.CGROUP_SOCK_ADDR, AT.CGROUP_INET4_GETPEERNAME, "cgroup", 0),
    ("cgroup/getpeername6", PT.CGROUP_SOCK_ADDR, AT.CGROUP_INET6_GETPEERNAME, "cgroup", 0),
    ("cgroup/getpeername_unix", PT.CGROUP_SOCK_ADDR, AT.CGROUP_UNIX_GETPEERNAME, "cgroup", 0),
    ("cgroup/getsockname4", PT.CGROUP_SOCK_ADDR, AT.CGROUP_INET4_GETSOCKNAME, "cgroup", 0),
    ("cgroup/getsockname6", PT.CGROUP_SOCK_ADDR, AT.CGROUP_INET6_GETSOCKNAME, "cgroup", 0),
    ("cgroup/getsockname_unix", PT.CGROUP_SOCK_ADDR, AT.CGROUP_UNIX_GETSOCKNAME, "cgroup", 0),
    ("cgroup/sysctl", PT.CGROUP_SYSCTL, AT.CGROUP_SYSCTL, "cgroup", 0),
    ("cgroup/getsockopt", PT.CGROUP_SOCKOPT, AT.CGROUP_GETSOCKOPT, "cgroup", 0),
    ("cgroup/setsockopt", PT.CGROUP_SOCKOPT, AT.CGROUP_SETSOCKOPT, "cgroup", 0),
    ("cgroup/dev", PT.CGROUP_DEVICE, AT.CGROUP_DEVICE, "cgroup", 0),
    ("struct_ops+", PT.STRUCT_OPS, 0, "", 0),
    ("struct_ops.s+", PT.STRUCT_OPS, 0, "", _SLEEP),
    ("sk_lookup", PT.SK_LOOKUP, AT.SK_LOOKUP, "", 0),
    ("netfilter", PT.NETFILTER, AT.NETFILTER, "", 0),
]

#: the names a user can write, for error messages
SUPPORTED_PREFIXES: tuple[str, ...] = tuple(
    r[0].rstrip("+") + ("[/<target>]" if r[0].endswith("+") else "") for r in _TABLE
)


def _target(pat: str, sec: str) -> str | None:
    """The text after the prefix if ``sec`` matches table pattern ``pat`` (libbpf's rules), else None."""
    if pat.endswith("+"):
        base = pat[:-1]
        if sec == base:
            return ""
        return sec[len(base) + 1 :] if sec.startswith(base + "/") else None
    if pat.endswith("/"):
        return sec[len(pat) :] if sec.startswith(pat) else None
    return "" if sec == pat else None


def _match(sec: str) -> tuple[tuple[str, int, int, str, int], str] | None:
    # libbpf's rule, row by row in table order (results are cached per name).
    for row in _TABLE:
        target = _target(row[0], sec)
        if target is not None:
            return row, target
    return None


#: sections an application registered (libbpf's libbpf_register_prog_handler): pattern ->
#: (program type, expected attach type, flags); matched before the built-in table
_CUSTOM: dict[str, tuple[int, int, int]] = {}
#: the attach_kind of programs in a registered section: "custom:" + the pattern
CUSTOM_KIND = "custom:"


def register_section(pattern: str, prog_type: int, expected_attach_type: int = 0, *,
                     sleepable: bool = False) -> None:
    """Teach the section parser a name other loaders use (``SEC("myloader/...")``).

    ``pattern`` follows the table's rules: ``"name+"`` matches ``name`` and ``name/<x>``,
    ``"name/"`` needs ``/<x>``, anything else matches exactly.  Programs in such sections
    get ``attach_kind == "custom:<pattern>"`` and the text after the prefix as target.
    Registered patterns win over the built-in table, as in libbpf.
    """
    if not pattern or pattern in ("+", "/"):
        raise SectionError(f"invalid section pattern {pattern!r}: e.g. 'myloader+' or 'myloader/'")
    _CUSTOM[pattern] = (int(prog_type), int(expected_attach_type), _SLEEP if sleepable else 0)
    _cache.clear()


def unregister_section(pattern: str) -> None:
    """Forget a pattern :func:`register_section` added (unknown patterns are ignored)."""
    _CUSTOM.pop(pattern, None)
    _cache.clear()


def _match_custom(sec: str) -> tuple[tuple[str, int, int, str, int], str] | None:
    for pat, (ptype, atype, flags) in _CUSTOM.items():
        target = _target(pat, sec)
        if target is not None:
            return (pat, ptype, atype, CUSTOM_KIND + pat, flags), target
    return None


_cache: dict[str, SectionDef] = {}
_CACHE_MAX = 1024  # bounded: a long-running process may open many objects with distinct section names


def parse_section(sec: str) -> SectionDef:
    """Classify a program section name the way libbpf does.

    Raises :class:`SectionError` for names no row matches.
    """
    hit = _cache.get(sec)
    if hit is not None:
        return hit
    name = sec[1:] if sec.startswith("?") else sec
    m = _match_custom(name) if _CUSTOM else None
    if m is None:
        m = _match(name)
    if m is None:
        raise SectionError(
            f"unknown program section {sec!r}: tracekit cannot tell the program type. "
            f"Use a libbpf section name such as tracepoint/<category>/<name>, raw_tp/<name>, "
            f"tp_btf/<name>, fentry/<func>, kprobe/<func>, ksyscall/<name>, uprobe/<path>:<func>, "
            f"perf_event, syscall, iter/<name>, lsm/<hook>, xdp, tc, socket "
            f"(all {len(SUPPORTED_PREFIXES)} forms: tracekit.obj.sections.SUPPORTED_PREFIXES)"
        )
    (pat, ptype, atype, kind, flags), target = m
    d = SectionDef(
        section=name,
        prefix=pat.rstrip("+"),
        prog_type=int(ptype),
        expected_attach_type=int(atype),
        attach_kind=kind,
        attach_target=target,
        sleepable=bool(flags & _SLEEP),
        needs_attach_btf=bool(flags & _BTF),
        autoload=not sec.startswith("?"),
        xdp_frags=bool(flags & _FRAGS),
    )
    if len(_cache) >= _CACHE_MAX:
        _cache.pop(next(iter(_cache)))  # oldest first
    _cache[sec] = d
    return d


# --- perf_event/type=T,config=C,frequency=F (ebpf_exporter's section convention) -----------

_PERF_TYPES = {"hardware": 0, "software": 1, "tracepoint": 2, "hw_cache": 3, "raw": 4, "breakpoint": 5}
#: config names per type (perf's event names), accepted besides numbers
_PERF_CONFIGS: dict[int, dict[str, int]] = {
    0: {"cpu-cycles": 0, "cycles": 0, "instructions": 1, "cache-references": 2, "cache-misses": 3,
        "branch-instructions": 4, "branches": 4, "branch-misses": 5, "bus-cycles": 6,
        "stalled-cycles-frontend": 7, "stalled-cycles-backend": 8, "ref-cycles": 9},
    1: {"cpu-clock": 0, "task-clock": 1, "page-faults": 2, "faults": 2, "context-switches": 3, "cs": 3,
        "cpu-migrations": 4, "migrations": 4, "minor-faults": 5, "major-faults": 6,
        "alignment-faults": 7, "emulation-faults": 8, "dummy": 9, "bpf-output": 10, "cgroup-switches": 11},
}


class PerfEventTarget(FrozenRecord):
    """What a ``perf_event/...`` section asks for: the event and how often to sample it."""

    __slots__ = ("type", "config", "sample_freq", "sample_period")
    _fields = __slots__
    type: int
    config: int
    sample_freq: int | None  # samples per second (frequency mode)
    sample_period: int | None  # one sample every N events

    def __init__(self, type: int, config: int, sample_freq: int | None = None,
                 sample_period: int | None = None) -> None:
        s = object.__setattr__
        s(self, "type", type)
        s(self, "config", config)
        s(self, "sample_freq", sample_freq)
        s(self, "sample_period", sample_period)


def parse_perf_event_target(target: str) -> PerfEventTarget:
    """Parse ``type=T,config=C,frequency=F`` (or ``period=P``); numbers are decimal or 0x-hex,
    ``type`` may be ``hardware``/``software``/..., ``config`` a perf event name such as
    ``cpu-clock`` or ``cycles``.  Raises :class:`SectionError` saying what is wrong."""
    form = "perf_event/type=T,config=C,frequency=F (or period=P), e.g. perf_event/type=1,config=0,frequency=99"
    vals: dict[str, str] = {}
    for item in target.split(","):
        key, eq, val = item.strip().partition("=")
        if not eq or not val:
            raise SectionError(f"perf_event target {target!r}: {item!r} is not key=value; write {form}")
        if key not in ("type", "config", "frequency", "period"):
            raise SectionError(f"perf_event target {target!r}: unknown key {key!r}; write {form}")
        if key in vals:
            raise SectionError(f"perf_event target {target!r}: {key} given twice")
        vals[key] = val.strip()

    def number(key: str, names: dict[str, int]) -> int:
        text = vals[key]
        if text.lower() in names:
            return names[text.lower()]
        try:
            n = int(text, 0)
        except ValueError:
            known = ", ".join(sorted(names)) or "numbers only"
            raise SectionError(f"perf_event target {target!r}: {key}={text!r} is not a number "
                               f"(or one of: {known})") from None
        if n < 0:
            raise SectionError(f"perf_event target {target!r}: {key} must not be negative")
        return n

    for need in ("type", "config"):
        if need not in vals:
            raise SectionError(f"perf_event target {target!r}: {need}= is missing; write {form}")
    ptype = number("type", _PERF_TYPES)
    config = number("config", _PERF_CONFIGS.get(ptype, {}))
    if ("frequency" in vals) == ("period" in vals):
        raise SectionError(f"perf_event target {target!r}: give exactly one of frequency= and period=")
    if "frequency" in vals:
        freq = number("frequency", {})
        if freq == 0:
            raise SectionError(f"perf_event target {target!r}: frequency must be at least 1 (Hz)")
        return PerfEventTarget(ptype, config, sample_freq=freq)
    period = number("period", {})
    if period == 0:
        raise SectionError(f"perf_event target {target!r}: period must be at least 1 (events per sample)")
    return PerfEventTarget(ptype, config, sample_period=period)
