import sys

from serkit.cli import main

sys.exit(main())
