"""Thin wrappers over the kernel interfaces tracekit uses: bpf(2), perf_event_open(2),
tracefs and bpffs.  Nothing here knows about ELF objects; higher layers (maps, links,
object) build on these functions."""
