"""bert-lrp: a from-scratch PyTorch BERT whose attributions (LRP, GS, GI, LAT) cost one backward pass."""
from .attribution.explain import Explanation, explain
from .attribution.road import Request, TextExplanation, explain_texts
from .models.bert import (BertForMaskedLM, BertForMultipleChoice, BertForNextSentencePrediction, BertForPreTraining,
                          BertForQuestionAnswering, BertLMHeadModel, BertForSequenceClassification,
                          BertForTokenClassification, BertModel, InputError)
from .models.auto import (AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForMultipleChoice,
                          AutoModelForQuestionAnswering,
                          AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer)
from .models.bridge import from_transformers, to_transformers
from .models.checkpoint import CheckpointError, LoadingInfo
from .models.config import BertConfig, ConfigError, DistilBertConfig, ElectraConfig, RobertaConfig
from .models.distilbert import (DistilBertForMaskedLM, DistilBertForMultipleChoice, DistilBertForQuestionAnswering,
                                DistilBertForSequenceClassification,
                                DistilBertForTokenClassification, DistilBertModel)
from .models.electra import (ElectraForMultipleChoice, ElectraForQuestionAnswering, ElectraForSequenceClassification,
                             ElectraForTokenClassification, ElectraModel)
from .models.roberta import (RobertaForMaskedLM, RobertaForMultipleChoice, RobertaForQuestionAnswering, RobertaForSequenceClassification,
                             RobertaForTokenClassification, RobertaModel)
from .models.hub import HubError
from .models.tokenization import BertTokenizer, Encoding, RobertaTokenizer, TokenizerError

__version__ = "0.1.0"

__all__ = [
    "explain", "Explanation", "explain_texts", "Request", "TextExplanation", "BertConfig", "BertModel", "BertForSequenceClassification", "BertForTokenClassification",
    "BertForMaskedLM", "BertForPreTraining", "BertTokenizer", "Encoding",
    "CheckpointError", "ConfigError", "InputError", "TokenizerError", "LoadingInfo",
    "RobertaConfig", "RobertaModel", "RobertaForSequenceClassification", "RobertaForTokenClassification",
    "RobertaForMaskedLM", "DistilBertConfig", "DistilBertModel", "DistilBertForSequenceClassification",
    "DistilBertForTokenClassification", "DistilBertForMaskedLM", "ElectraConfig", "ElectraModel",
    "ElectraForSequenceClassification", "ElectraForTokenClassification", "RobertaTokenizer", "HubError",
    "AutoConfig", "AutoModel", "AutoModelForSequenceClassification", "AutoModelForTokenClassification",
    "AutoModelForMaskedLM", "AutoTokenizer", "BertForQuestionAnswering", "BertForMultipleChoice",
    "BertForNextSentencePrediction", "BertLMHeadModel", "RobertaForQuestionAnswering", "ElectraForQuestionAnswering",
    "AutoModelForQuestionAnswering", "from_transformers", "to_transformers", "RobertaForMultipleChoice",
    "DistilBertForMultipleChoice", "ElectraForMultipleChoice", "DistilBertForQuestionAnswering",
    "AutoModelForMultipleChoice",
]
