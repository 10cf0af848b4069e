"""``python -m tickwire`` is the ``tickwire`` command."""

import sys

from tickwire.cli import main

sys.exit(main())
