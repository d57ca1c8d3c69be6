"""The attach types this host lacks, for real: the live attach suites inside Debian 6.1,
6.12 and sid's newest (7.2 in Dec 2026) kernels under qemu (tests/vm/runner.py).

    python -m pytest -q tests/vm/test_in_guest_attach.py          # from the host, ~N min

Each kernel boots once and runs, inside, with TRACEKIT_REQUIRE_LIVE=1 (a skip on a kernel
known to have the feature fails):

    tests/live/test_attach_probes.py    kprobe/kretprobe (PMU, ioctl, kprobe_events),
                                        ksyscall, kprobe.multi (6.12, 7.2; clear error on 6.1),
                                        uprobe/uretprobe
    tests/live/test_attach_tracing.py   fentry/fexit/fmod_ret, module fentry, cookies
    tests/live/test_perfbuf.py          perf buffer
    tests/vm/test_in_guest_tools.py     tracekit-execsnoop -d 5 sees an exec
    tests/live/test_module_btf.py       CO-RE against module types, nf_conntrack kfuncs
                                        (fd_array), x_tables' per-CPU __ksym

BPF objects and the uprobe target are built here first (no compiler runs in the guest);
their paths reach the guest as TRACEKIT_PREBUILT_* variables.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from tests.support import build_bpf_object, require_live, skip_or_fail

pytestmark = pytest.mark.vm

GUEST_SUITE = [
    "tests/live/test_attach_probes.py",
    "tests/live/test_attach_tracing.py",
    "tests/live/test_perfbuf.py",
    "tests/vm/test_in_guest_tools.py",
    "tests/vm/test_guest.py",
    # the CO-RE and extern issues' tests that need other kernels: kfuncs missing on 6.1,
    # __arg_ctx only through the fallback on 6.1, module BTF, kconfig from Debian's config
    "tests/live/test_core_live.py",
    "tests/live/test_externs.py",
    "tests/live/test_arg_ctx.py",
    "tests/live/test_features.py",
    # module BTF (this host has none): CO-RE candidates, kfuncs and a typed ksym of modules
    "tests/live/test_module_btf.py",
    # fallback chains: fentry chosen where it works, kprobe on a renamed function's real name
    "tests/live/test_fallback.py",
    "tests/live/test_tool_funccount.py",
    "tests/live/test_tool_oomkill.py",
    "tests/live/test_tool_fsslower.py",
    # biosnoop/cachestat fallback chains (kprobe/fentry branches), summary probes' CO-RE
    "tests/live/test_tool_hooks.py",
    # in-kernel BTF look-ups: module BTF names (none on this host) and kernel-side CO-RE
    # with tp_btf/kfuncs on 6.1 and the newest; forced ring-buffer wake-ups on each kernel
    "tests/live/test_btf_lookup.py",
    "tests/live/test_batch_latency.py",
]
#: objects those suites build with tests.support.build_bpf_object (name, defines)
SHARED_OBJECTS = [
    ("core_live.bpf.c", ()),
    ("extern_kfunc.bpf.c", ()),
    ("extern_kfunc.bpf.c", ("STRONG_MISSING",)),
    ("extern_kfunc.bpf.c", ("STRONG_BAD_PROTO",)),
    ("extern_kfunc.bpf.c", ("UNGUARDED",)),
    ("extern_ksym.bpf.c", ()),
    ("extern_ksym.bpf.c", ("TYPED",)),
    ("extern_kconfig.bpf.c", ()),
    ("extern_kconfig.bpf.c", ("STRONG_MISSING",)),
    ("argctx_fallback.bpf.c", ()),
    ("extern_sanitize.bpf.c", ()),
    ("module_core.bpf.c", ()),
    ("module_kfunc.bpf.c", ()),
    ("module_ksym.bpf.c", ()),
    ("fallback_chain.bpf.c", ()),
    ("btf_lookup.bpf.c", ()),
    ("btf_lookup.bpf.c", ("STRONG_MISSING",)),
    ("btf_lookup.bpf.c", ("TOO_FEW_ARGS",)),
]
OBJECTS = ["attach_probes.bpf.c", "attach_tracing.bpf.c", "attach_perfbuf.bpf.c"]
#: per-kernel cap (boot included); the whole CI has 60 min for everything
TIMEOUT = float(os.environ.get("TRACEKIT_VM_ATTACH_TIMEOUT", "1500"))


def prebuilt_env() -> dict[str, str]:
    from tests.live.test_attach_probes import target_binary

    env = {"TRACEKIT_REQUIRE_LIVE": "1", "TRACEKIT_PREBUILT_ATTACH_TARGET": target_binary()}
    for name in OBJECTS:
        env["TRACEKIT_PREBUILT_" + name.split(".")[0].upper()] = str(build_bpf_object(name))
    # The other suites build through the shared cache: same header, same cache keys.
    from tests.support import vmlinux_h

    env["TRACEKIT_VMLINUX_H"] = str(vmlinux_h())
    for name, defines in SHARED_OBJECTS:
        build_bpf_object(name, defines=list(defines))
    return env


#: A guest kernel that oopses on an int3 it placed itself while live-patching its text
#: (static keys flipped by perf events, kprobes), presumably because TCG let another vCPU
#: run the breakpoint after the patch completed (cross-modifying code), so no handler
#: claimed it. Seen once in ~6 attach-suite runs on 7.2 (in __schedule, at a static-key
#: site): the suite then runs once more, saying so; any other guest death fails.
STRAY_INT3 = re.compile(r"Oops: int3: ")

#: the matrix: Debian's 6.1 and 6.12, and sid's newest kernel (whatever version it is)
MATRIX = ["6.1", "6.12", "sid"]


def kernel_series(release: str) -> str:
    """``major.minor`` of a release, as tests.support.SERIES computes it in the guest."""
    return ".".join(release.split(".")[:2]).split("-")[0]


@pytest.mark.parametrize("series", MATRIX)
def test_attach_suite_in_guest(series: str) -> None:
    require_live("root to run qemu")
    if os.environ.get("TRACEKIT_IN_VM") == "1":
        pytest.skip("no nested qemu inside the matrix guest")
    from tests.vm import kernels, runner

    try:
        kernels.ensure_tools()
        kernel = kernels.prepare_kernel(series)
    except (kernels.VMSetupError, OSError, subprocess.CalledProcessError) as e:
        skip_or_fail(f"cannot prepare the {series} kernel: {e}")
        raise
    # In a guest whose series KNOWN_FEATURES does not list, need() would skip silently and
    # the suite still pass: when sid moves on (7.3, ...), say so instead.
    from tests.support import KNOWN_FEATURES

    got = kernel_series(kernel.release)
    assert got in KNOWN_FEATURES["kprobes"], (
        f"{kernel.package} is Linux {got}, which tests/support.py KNOWN_FEATURES does not list: "
        f"check kprobes, kprobe.multi, fentry, uprobes and module BTF in its guest "
        f"(python -m tests.vm.runner --kernel {series} --shell) and add {got!r} to each it has")
    env = prebuilt_env()
    cmd = ["python3", "-m", "pytest", "-q", "--color=no", "-p", "no:cacheprovider", "-o", "addopts=-ra",
           "--durations=8", *GUEST_SUITE]
    for attempt in (1, 2):
        out = io.BytesIO()
        res = runner.run(cmd, kernel, timeout=TIMEOUT, env=env, stdout=out, stderr=out)
        text = out.getvalue().decode(errors="replace")
        sys.stdout.write(f"--- guest {res.kernel} (boot {res.boot_seconds}s, cmd {res.cmd_seconds}s) ---\n{text}")
        if attempt == 1 and res.returncode == runner.GUEST_DIED_EXIT and STRAY_INT3.search(res.console):
            sys.stdout.write(f"--- {res.kernel} oopsed on a stray int3 while patching its own text "
                             "(TCG, see STRAY_INT3): running the suite once more ---\n")
            continue
        break
    assert res.returncode == 0, f"guest suite on {res.kernel} exited {res.returncode}:\n{text[-12000:]}\n{res.notes}"
    # A skip inside the guest is a failure already (TRACEKIT_REQUIRE_LIVE=1 + need());
    # check that the suite really ran.
    assert " passed" in text and " failed" not in text, text[-4000:]
