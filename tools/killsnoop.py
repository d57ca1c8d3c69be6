"""tracekit-killsnoop: kill(2)-family calls with their results, like BCC's killsnoop
(tracekit-sigsnoop -k with BCC's options and columns)."""

from __future__ import annotations

from .sigsnoop import main as _sigsnoop_main


def main(argv: list[str] | None = None) -> int:
    return _sigsnoop_main(argv, killsnoop=True)


if __name__ == "__main__":
    raise SystemExit(main())
