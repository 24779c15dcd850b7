"""``python -m avengers.cli`` runs the command line (as ``python -m avengers`` does)."""

from . import main

main()
