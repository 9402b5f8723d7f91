"""One measured pipeline in its own process: `python -m bench.child '<Spec as JSON>'`.

Prints one JSON line (a Measured) on stdout, so the peak RSS it reports is this pipeline's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import orjson

from bench.pipelines import Spec, run


def main(argv: list[str]) -> int:
    spec = Spec(**orjson.loads(argv[0]))
    result = asyncio.run(run(spec))
    sys.stdout.write(orjson.dumps(dataclasses.asdict(result)).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
