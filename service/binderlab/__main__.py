"""``python -m binderlab``: the same as the ``binderlab`` command."""

from binderlab.commands.cli import main

main()
