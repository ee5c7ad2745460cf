"""English function words the explorer's words table can hide (``hide=stopwords``): articles,
pronouns, auxiliaries, prepositions, conjunctions and a few particles -- a small fixed list for
English texts, not a linguistic resource (other languages keep all their words). Negations and
degree words (no, not, nor, n't, never, very, too, only) are NOT in it: they often decide a
classifier's label, so they stay in the table."""
from __future__ import annotations

STOP_WORDS = frozenset("""
a an the this that these those
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself
she her hers herself it its itself they them their theirs themselves one
am is are was were be been being have has had having do does did doing will would shall should can could
may might must
and or but so yet if then than because as while until although though whether
of at by for with about between into through during before after above below to from up down
in out on off over under again further once here there when where why how
all any both each few more most other some such own same just
s t d ll m o re ve y 's 're 've 'd 'll 'm
what which who whom whose
""".split())

__all__ = ["STOP_WORDS"]
