"""Fine-tuning: data readers, metrics, the training loop."""
