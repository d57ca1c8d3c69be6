"""Process and container context: who an event came from, and filters on where it runs.

* :mod:`tracekit.context.process`: pid -> comm, cmdline, cgroup path and container id,
  read from /proc (a process that has exited is reported as such, never as an error);
* :mod:`tracekit.context.cgroup`: cgroup-v2 ids (what ``bpf_get_current_cgroup_id()``
  returns) <-> cgroupfs paths, with a bounded cache refreshed on a miss;
* :mod:`tracekit.context.filters`: the container filters tools offer (libbpf-tools'
  ``-c/--cgroup PATH``, BCC's ``--cgroupmap`` and ``--mntnsmap``), declared in a probe with
  ``TK_DECLARE_CGROUP_FILTER()`` / ``TK_DECLARE_CGROUPMAP_FILTER()`` /
  ``TK_DECLARE_MNTNS_FILTER()`` from tracekit.h and switched on from Python with
  ``Probe(cgroup=..., cgroupmap=..., mntnsmap=...)``.
"""
