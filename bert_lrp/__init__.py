"""bert-lrp: a from-scratch PyTorch BERT whose attributions (LRP, GS, GI, LAT) cost one backward pass."""
from .attribution import Explanation, explain
from .checkpoint import CheckpointError, LoadingInfo
from .config import BertConfig, ConfigError
from .modeling import (BertForMaskedLM, BertForPreTraining, BertForSequenceClassification,
                       BertForTokenClassification, BertModel, InputError)
from .tokenization import BertTokenizer, Encoding, TokenizerError

__version__ = "0.1.0"

__all__ = [
    "explain", "Explanation", "BertConfig", "BertModel", "BertForSequenceClassification", "BertForTokenClassification",
    "BertForMaskedLM", "BertForPreTraining", "BertTokenizer", "Encoding",
    "CheckpointError", "ConfigError", "InputError", "TokenizerError", "LoadingInfo",
]
