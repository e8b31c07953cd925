"""``python -m ephysd`` is the ``ephysd`` command."""

from ephysd.cli import main

main()
