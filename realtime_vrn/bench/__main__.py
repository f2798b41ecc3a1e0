"""``python -m realtime_vrn.bench {backends,gpu,render} [options]``: one stage benchmark alone.

``realtime-vrn bench`` is the pipeline benchmark (and, with its options, these too in the same JSON).
"""

from __future__ import annotations

import importlib
import sys

#: subcommand -> module whose ``main(argv) -> int`` runs it
COMMANDS = {
    "backends": "realtime_vrn.bench.backends",
    "gpu": "realtime_vrn.bench.gpu",
    "render": "realtime_vrn.bench.render",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m realtime_vrn.bench {{{','.join(COMMANDS)}}} [options] (--help after one for "
              "its options)", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
