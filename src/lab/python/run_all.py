#!/usr/bin/env python3
"""Runs every experiment script beside this file (``cNN_*.py``, in claim order) and prints one
lab document of them all, to bring back and compare with ``socklab lab compare``::

    python3 run_all.py > mine.json
    socklab lab --json > linux.json
    socklab lab compare linux.json mine.json
"""

import glob
import importlib
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _socklab_lab as lab  # noqa: E402


def main():
    signal.signal(signal.SIGTERM, lab._exit_on_sigterm)
    experiments = []
    for path in sorted(glob.glob(os.path.join(HERE, "c[0-9][0-9]_*.py"))):
        mod = importlib.import_module(os.path.basename(path)[:-3])
        experiments.append(lab.run(mod.observe, mod.CLAIM, mod.TITLE))
    lab.print_document(experiments)


if __name__ == "__main__":
    main()
