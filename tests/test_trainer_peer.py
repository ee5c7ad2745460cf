"""transformers' own Trainer fine-tunes our models exactly as it fine-tunes transformers' (a
transformers script with only the model import changed keeps working)."""
import pytest
import torch
import transformers

from bert_lrp import AutoModelForSequenceClassification


def _configs():
    common = dict(vocab_size=60, num_labels=2, max_position_embeddings=40)
    return {
        "bert": transformers.BertConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=50,
                                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **common),
        "distilbert": transformers.DistilBertConfig(dim=48, n_layers=2, n_heads=4, hidden_dim=50, dropout=0.0,
                                                    attention_dropout=0.0, seq_classif_dropout=0.0, **common),
    }


def _train(model, data, folder):
    args = transformers.TrainingArguments(output_dir=str(folder), per_device_train_batch_size=4, max_steps=4,
                                          learning_rate=1e-3, logging_steps=1, report_to=[], seed=0, use_cpu=True,
                                          save_strategy="no", disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_trainer_steps_on_ours_equal_its_steps_on_transformers(family, tmp_path):
    torch.manual_seed(0)
    config = _configs()[family]
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "model")
    ids, labels = torch.randint(5, 60, (16, 10)), torch.randint(0, 2, (16,))
    data = [{"input_ids": ids[i], "attention_mask": torch.ones(10, dtype=torch.long), "labels": labels[i]}
            for i in range(16)]
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    ours = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    their_losses, our_losses = _train(theirs, data, tmp_path / "a"), _train(ours, data, tmp_path / "b")
    assert len(our_losses) == 4
    # same start, dropout off, same batches: only float32 rounding of the two implementations differs
    torch.testing.assert_close(torch.tensor(our_losses), torch.tensor(their_losses), rtol=0, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids[:4]).logits, theirs(input_ids=ids[:4]).logits, rtol=0, atol=1e-4)
