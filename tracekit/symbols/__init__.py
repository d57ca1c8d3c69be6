"""Stack traces and symbols: kernel (kallsyms), user (ELF symbol tables per process, JIT
perf maps), stack-trace maps, and BCC's text forms (frames, blocks, folded stacks).

Modules, one concept each: :mod:`.kallsyms`, :mod:`.elfsyms`, :mod:`.procmaps`,
:mod:`.perfmap`, :mod:`.resolver` (per-process symbolizer, ELF cache), :mod:`.stacks`.

A profiler in a few lines (the BPF side keys counts by pid and two bpf_get_stackid() ids)::

    obj = tracekit.open("profile.bpf.o"); obj.load()
    obj.programs["do_sample"].attach_perf_event(sample_freq=49)
    ...
    stacks = StackTraces(obj.maps["stacks"])          # one Symbolizer: kallsyms + processes
    for key, count in obj.maps["counts"].items():
        pid, ustack, kstack = struct.unpack_from("<Iii", key)
        print(fold(comm, int.from_bytes(count, "little"),
                   user=stacks.user(ustack, pid), kernel=stacks.kernel(kstack),
                   user_stack_id=ustack, kernel_stack_id=kstack, delimiter=True))
"""

from tracekit.symbols.elfsyms import ElfSymbols, Symbol
from tracekit.symbols.kallsyms import KernelSymbol, KernelSymbols, kernel_symbols
from tracekit.symbols.perfmap import PerfMap
from tracekit.symbols.procmaps import Mapping, parse_maps, read_maps
from tracekit.symbols.resolver import ElfCache, Frame, ProcessSymbols, Symbolizer
from tracekit.symbols.stacks import (
    BuildIdFrame,
    StackTraces,
    decode_build_id_stack,
    decode_ips,
    fold,
    format_block,
    format_stack,
    stack_id_missed,
)

__all__ = [
    "ElfSymbols", "Symbol", "KernelSymbol", "KernelSymbols", "kernel_symbols", "PerfMap", "Mapping",
    "parse_maps", "read_maps", "ElfCache", "Frame", "ProcessSymbols", "Symbolizer", "BuildIdFrame",
    "StackTraces", "decode_build_id_stack", "decode_ips", "fold", "format_block", "format_stack",
    "stack_id_missed",
]
