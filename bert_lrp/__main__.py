from bert_lrp.cli import main
import sys
sys.exit(main())
