"""``python -m cli`` is ``rag``."""

import sys

from cli.main import main

sys.exit(main())
