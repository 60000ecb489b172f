import sys

from panjereh.devstack.stack import main_run

sys.exit(main_run())
