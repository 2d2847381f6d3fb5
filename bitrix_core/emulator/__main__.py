"""`python -m bitrix_core.emulator`: the same as the `bitrix24-emulator` console script."""

import sys

from bitrix_core.emulator.cli import main

sys.exit(main())
