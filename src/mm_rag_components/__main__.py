"""``python -m mm_rag_components`` runs the ``mm-rag`` command."""

import sys

from .cli import main

sys.exit(main())
