"""``python -m realtime_vrn.bench ARGS`` is ``realtime-vrn bench ARGS``: the same command tree, the same parsers."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from realtime_vrn.cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
