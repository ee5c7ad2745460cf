"""``python -m bert_lrp.cli COMMAND ...`` (as torchrun needs a module)."""
import sys

from . import main

sys.exit(main())
