"""``bert-lrp serve``: the explorer, a local web page to explain, compare and browse.

:mod:`.explorer` answers the API (checked requests, the one road, the records of
``explain --json``); :mod:`.app` serves it and the page in ``static/`` with Starlette (the
optional extra ``bert-lrp[serve]``). See docs/serve.md.
"""
