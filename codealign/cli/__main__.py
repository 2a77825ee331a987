"""``python -m codealign.cli``: the same as the ``codealign`` command."""

import sys

from codealign.cli import main

sys.exit(main())
