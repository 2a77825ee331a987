"""``python -m codealign`` (and ``accelerate launch -m codealign``): the ``codealign`` command."""

import sys

from codealign.cli import main

sys.exit(main())
