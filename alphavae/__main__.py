"""``python -m alphavae`` runs the command line."""

import sys

from alphavae.cli import main

sys.exit(main())
