"""The private ATen kernels and their public-API fallbacks give the same attributions."""
import pytest
import torch

from bert_lrp import BertConfig, BertForSequenceClassification, explain
from bert_lrp.rules.kernels import HAS_FUSED, fused, portable_kernels


def _model_and_batch():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=30, max_position_embeddings=16, num_labels=3)
    model = BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 50, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return model, {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_this_torch_has_the_fused_kernels():
    assert HAS_FUSED, "torch 2.13 ships every fused kernel the rules use; a change here means a torch upgrade"


@pytest.mark.parametrize("rule", ["attnlrp", "cp-lrp", "bert-lrp"])
def test_fallback_kernels_give_the_fast_path_attributions(rule):
    model, batch = _model_and_batch()
    fast = explain(model, batch, methods=["gs", "gi", "lrp"], rule=rule)
    with portable_kernels():
        assert not fused()
        portable = explain(model, batch, methods=["gs", "gi", "lrp"], rule=rule)
    assert fused()
    for method in ("gradient", "gradient_x_input", "lrp"):
        # float32 rounding of two summation orders of the same formulas
        torch.testing.assert_close(portable.scores[method], fast.scores[method], rtol=1e-4, atol=1e-6)


def test_fallback_gelu_tanh_and_layer_norm_gradients_equal_autograd():
    from bert_lrp.rules import kernels

    torch.manual_seed(0)
    x, g = torch.randn(4, 7, dtype=torch.float64, requires_grad=True), torch.randn(4, 7, dtype=torch.float64)
    weight = torch.rand(7, dtype=torch.float64) + 0.5
    with portable_kernels():
        for approximate in ("none", "tanh"):
            (expected,) = torch.autograd.grad(torch.nn.functional.gelu(x, approximate=approximate), x, g)
            torch.testing.assert_close(kernels.gelu_backward(g, x.detach(), approximate), expected)
        y, mean, inv_std = kernels.layer_norm_forward(x.detach(), weight, None, 1e-12)
        (expected,) = torch.autograd.grad(torch.nn.functional.layer_norm(x, (7,), weight, None, 1e-12), x, g)
        torch.testing.assert_close(kernels.layer_norm_backward(g, x.detach(), mean, inv_std, weight), expected)
