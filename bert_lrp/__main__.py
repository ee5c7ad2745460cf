"""``python -m bert_lrp ...`` is ``bert-lrp ...``."""
import sys

from bert_lrp.cli import main

sys.exit(main())
