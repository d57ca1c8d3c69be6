"""Coverage-guided fuzzing of the pure layer with atheris (libFuzzer for Python).

    pip install atheris        # a wheel exists for CPython 3.11 on x86-64
    python3 -m tests.fuzz.atheris_target -max_total_time=600 -timeout=2 -rss_limit_mb=2048 \\
        build/atheris-corpus tests/fuzz/corpus

The input's own bytes choose what runs: an ELF (``\\x7fELF``) goes through
``tracekit.open`` + the load plan + global data + event types (:func:`harness.run_elf`);
anything else is raw BTF, walked type by type, and then used as the CO-RE target of a
bundled probe.  A TracekitError is the expected outcome of most inputs; any other
exception propagates, which atheris reports as a crash (with the input saved).
atheris is imported only here, and only when run as a program.
"""

from __future__ import annotations

import sys
from typing import Any

from tests.fuzz import harness

_ctx: Any = None


def _context() -> Any:
    global _ctx
    if _ctx is None:
        objects = harness.seed_objects()
        _ctx = harness.Context(harness.default_target(), objects)
    return _ctx


def test_one_input(data: bytes) -> None:
    from tracekit.errors import TracekitError

    ctx = _context()
    kinds = ["elf"] if data[:4] == b"\x7fELF" else ["btf", "target"]
    for kind in kinds:
        pair = "opensnoop" if "opensnoop" in ctx.seed_objects else next(iter(ctx.seed_objects))
        try:
            harness.run_input(kind, data, ctx, pair)
        except TracekitError:
            pass


def main() -> None:
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=["tracekit"]):
        # imported here to be instrumented for coverage (several are imported lazily by
        # tracekit itself, which would leave them uninstrumented)
        import tracekit.btf.ext
        import tracekit.btf.reader
        import tracekit.btf.sanitize
        import tracekit.btf.writer
        import tracekit.data.globaldata
        import tracekit.events.records
        import tracekit.obj.core
        import tracekit.obj.elf
        import tracekit.obj.externs
        import tracekit.obj.plan
        import tracekit.object  # noqa: F401
    # seeds and the target BTF are read before fuzzing starts, not on the first input
    _context()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
