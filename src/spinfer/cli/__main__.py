"""``python -m spinfer.cli``: the same as the ``spinfer`` command (torchrun uses it)."""

from spinfer.cli import main

main()
