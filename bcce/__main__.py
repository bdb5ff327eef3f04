"""``python -m bcce``: the same as the ``bcce`` command."""

from bcce.cli import main

main()
