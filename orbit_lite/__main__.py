"""``python -m orbit_lite``: the same as the ``orbit-lite`` command."""

from orbit_lite.cli.main import main

main()
