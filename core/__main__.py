"""`python -m core train|sample|evaluate`: see core/cli.py."""

import sys

from core.cli import main

sys.exit(main())
