"""``python -m dockyard``: the same as the ``dockyard`` command."""

from dockyard.cli import main

main()
