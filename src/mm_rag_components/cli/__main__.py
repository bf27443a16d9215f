"""``python -m mm_rag_components.cli``: the ``mm-rag`` command."""

import sys

from . import main

sys.exit(main())
