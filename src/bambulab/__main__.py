"""``python3 -m bambulab ...`` is the same as the ``bambu`` command."""

from bambulab.cli.main import main

main()
