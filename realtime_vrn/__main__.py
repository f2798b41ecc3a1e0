import sys

from realtime_vrn.cli import main

sys.exit(main())
