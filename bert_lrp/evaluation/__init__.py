"""Faithfulness evaluation and the attribution benchmark."""
