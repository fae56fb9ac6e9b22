import sys

from routeyard.cli import main

sys.exit(main())
