import sys

from ches.cli import main

sys.exit(main())
