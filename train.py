#!/usr/bin/env python
"""The whole per-scene job from one command line: fit the decoder (then shape it when --masks is given).

    python train.py DATA --ply pretrained.ply --out RUN [--masks DIR]

It is the same code as ``structgs fit`` (and ``structgs shape``); see ``python train.py --help``.
"""

from structgs.cli_train import main

if __name__ == "__main__":
    main()
