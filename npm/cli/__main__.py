"""``python -m npm.cli``: the ``azure-npm`` command."""

import sys

from npm.cli.commands import main

sys.exit(main())
