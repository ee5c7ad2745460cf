"""Independent implementations run next to ours, each in its own process when it patches torch
(``lxt_runner``: LXT's efficient AttnLRP, an optional peer of ``bert-lrp benchmark --peers`` and of
``tests/test_attribution_peers.py``)."""
