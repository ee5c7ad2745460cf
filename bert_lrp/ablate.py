"""Layer ablation, the public door: run a BERT model without some encoder layers, train it with
some frozen, and score a classifier without them.

Layers are numbered **1 to L**, as on the command line (``bert-lrp evaluate --skip-layers 6``,
``bert-lrp train --freeze-layers 1,2``)::

    from bert_lrp import ablate

    with ablate.skip_layers(model, [6]):
        logits = model(**batch).logits          # the model without its layer 6
    ablate.freeze_layers(model, [1, 2])         # requires_grad False on layers 1 and 2
    ablate.accuracy(model, tokenizer, "dev.tsv", skip=[6])

The work lives in :mod:`bert_lrp.models.ablation` (skip_layers, freeze_layers, parse_layers,
check_layers, encoder_layers) and :mod:`bert_lrp.evaluation.ablation` (predict, accuracy); this
module only re-exports them, and nothing inside the package imports it.
"""
from .evaluation.ablation import accuracy, predict
from .models.ablation import check_layers, encoder_layers, freeze_layers, parse_layers, skip_layers

__all__ = ["skip_layers", "freeze_layers", "parse_layers", "check_layers", "encoder_layers", "predict", "accuracy"]
