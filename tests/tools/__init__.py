"""Test tools of the CO-RE suites (a libbpf-linked C helper for the differential test)."""
