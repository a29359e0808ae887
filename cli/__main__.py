"""`python -m cli`: the `cockpit` command."""

import sys

from cli.main import main

sys.exit(main())
