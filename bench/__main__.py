"""`make bench`: run every benchmark module in this folder that defines ``main()``.

Modules are found by name (``_``-prefixed ones are helpers): login_timing, login_throughput,
me_throughput, audit_append, flags, signing, entitlements, console_pages, load_run (1,000
concurrent sessions; ``python -m bench.load_run --full`` for 100,000 requests) and peers
(fastapi-users side by side). ``python -m bench NAME ...`` runs only those named.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]))
    selected = [n for n in names if not n.startswith("_")]
    if len(sys.argv) > 1:
        selected = [n for n in selected if n in sys.argv[1:]]
    for name in selected:
        module = importlib.import_module(f"bench.{name}")
        runner = getattr(module, "main", None)
        if callable(runner):
            print(f"\n== {name} ==")
            runner()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
