"""``python -m avengers.demo`` runs the local-model demo (see :mod:`avengers.demo.run`)."""

import sys

from .run import main

sys.exit(main())
