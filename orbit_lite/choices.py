"""The names a user picks from, defined once: the engine checks them and the command line offers them (without
loading torch or numpy, so that ``--help`` and mistakes answer at once)."""

from __future__ import annotations

SPLITS = ("train", "validation", "test")  # an ORBIT tree's folders of users
PROTOCOLS = ("orbit2022", "orbit2021")  # evaluation protocols (orbit2022: the benchmark's current one)
MODES = ("clutter", "clean")  # what the query videos are: clutter videos, or held-out clean ones
