"""Model families and their I/O: configuration, the BERT model, outputs, checkpoints, tokenization."""
