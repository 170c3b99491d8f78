import sys

from rar_edge.cli import main

sys.exit(main())
