"""How relevance flows: one autograd Function per operation of BERT (``functions``), the linear
rules as objects registered by name (``linear``), the composites that choose a rule per operation
(``composites``), the operations the models are built from (``ops``: the plain fast path, or the
rule Functions under a RuleSet) and the private ATen kernels behind public fallbacks (``kernels``).
Models import this package; it imports no model."""
