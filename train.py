#!/usr/bin/env python
"""The whole per-scene job from one command line: fit the decoder, then shape it when --masks is given.

    python train.py DATA --ply pretrained.ply --out RUN [--masks DIR] [--shaped-out SHAPED]

The same as ``structgs train`` (every option of ``structgs fit``, plus --masks, --shaped-out,
--association and --shape-iters); see ``python train.py --help``.
"""

import sys

from structgs.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
