"""Look inside a BERT model: what each layer predicts for a masked word, how contextual the
embeddings of each layer are, and (in :mod:`bert_lrp.ablate`) what happens without a layer.

* :mod:`.mask` — ``bert-lrp inspect mask``: top-k predictions for ``[MASK]`` at the output and,
  through a logit-lens readout (the model's own masked-LM head applied to every layer's hidden
  state), per layer; per layer and head the attention from the masked position.
* :mod:`.embeddings` — ``bert-lrp inspect embeddings``: per-layer cosine similarities between a
  word's contextual embeddings, the anisotropy baseline (Ethayarajh 2019), baseline-corrected
  similarities, a 2-D PCA per layer.

The ``bert-lrp inspect`` command is :mod:`bert_lrp.cli.inspect`; the self-contained HTML views are
:mod:`bert_lrp.views.inspection_html`; models are loaded by :mod:`bert_lrp.models.loading`.

Everything reads the model's own ``output_hidden_states`` / ``output_attentions``; there is no
second model implementation. Tensors: ``hidden_states[l]`` is ``[batch, seq, hidden]`` for
``l = 0`` (the embedding output) to ``L`` (the last layer), ``attentions[l - 1]`` is
``[batch, heads, seq, seq]`` for layer ``l``.
"""
