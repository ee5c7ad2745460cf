"""The claims of the rule-per-operation table (docs/explanations.md) that the rule unit tests, the LXT peer
tests and the original-BERT-LRP tests do not already cover: what each preset conserves."""
import torch

from bert_lrp import BertForSequenceClassification, BertTokenizer, explain
from bert_lrp.rules.composites import ATTNLRP, BERT_LRP, CP_LRP, PRESETS, Composite
from bert_lrp.rules.functions import LayerNormRule
from bert_lrp.rules.linear import AlphaBeta, Epsilon

from conftest import FIXTURES

SHIPPED = FIXTURES.parents[1] / "checkpoints" / "minilm-sst2"


def _shipped_batch(n=6):
    lines = (FIXTURES / "sst2" / "dev_sample.tsv").read_text(encoding="utf-8").splitlines()[1: n + 1]
    return BertTokenizer.from_pretrained(SHIPPED)([line.split("\t")[0] for line in lines])


def _bias_free_shipped():
    model = BertForSequenceClassification.from_pretrained(SHIPPED).float().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    return model


def test_presets_choose_the_rules_of_their_papers():
    assert (ATTNLRP.linear, ATTNLRP.layer_norm, ATTNLRP.activation, ATTNLRP.softmax, ATTNLRP.bilinear) == \
        (Epsilon(epsilon=0.0), "detach_std", "identity", "taylor", "uniform")
    assert (CP_LRP.softmax, CP_LRP.bilinear, CP_LRP.layer_norm) == ("detach", "jacobian", "detach_std")
    assert (BERT_LRP.signal, BERT_LRP.linear, BERT_LRP.layer_norm, BERT_LRP.residual) == \
        ("relevance", AlphaBeta(alpha=0.5, stabilizer=1e-7), "jacobian", "block_jacobian")
    assert set(PRESETS) == {"attnlrp", "cp-lrp", "bert-lrp", "gradient"}


def test_composites_reject_rules_that_need_the_other_signal():
    import pytest

    with pytest.raises(ValueError, match="signal='relevance'"):
        Composite("x", linear="alpha_beta")
    with pytest.raises(ValueError, match="unknown softmax rule"):
        Composite("x", softmax="gradient")


def test_cp_lrp_conserves_the_logit_exactly_on_the_bias_free_shipped_model():
    result = explain(_bias_free_shipped(), _shipped_batch(), methods=["lrp"], rule="cp-lrp")
    torch.testing.assert_close(result.conservation["lrp"], torch.ones(6), rtol=0, atol=1e-3)  # float16 weights


def test_attnlrp_does_not_conserve_even_without_biases():
    """Its softmax Taylor rule is not conservative (AttnLRP paper, Prop. 3.1): totals drift."""
    ratio = explain(_bias_free_shipped(), _shipped_batch(), methods=["lrp"], rule="attnlrp").conservation["lrp"]
    assert ((ratio - 1).abs() > 0.1).any()


def test_a_layer_norm_jacobian_maps_any_relevance_to_a_zero_sum():
    """Why bert-lrp's totals are ~0: J^T R of a LayerNorm sums to 0 over the hidden units."""
    torch.manual_seed(0)
    x, relevance = torch.randn(3, 16, requires_grad=True), torch.randn(3, 16)
    y = LayerNormRule.apply(x, torch.rand(16) + 0.5, torch.zeros(16), 1e-12, (BERT_LRP,))
    (relevance_in,) = torch.autograd.grad(y, x, relevance)
    torch.testing.assert_close(relevance_in.sum(-1), torch.zeros(3), rtol=0, atol=1e-5)


def test_bert_lrp_relevance_totals_are_near_zero_on_the_shipped_model():
    model = BertForSequenceClassification.from_pretrained(SHIPPED).float().eval()
    ratio = explain(model, _shipped_batch(), methods=["lrp"], rule="bert-lrp").conservation["lrp"]
    assert ratio.abs().max() < 0.2
