"""What transformers' ``PreTrainedModel`` offers besides checkpoint I/O, for every family: the
attention implementation switch, gradient checkpointing, input gradients for adapters (PEFT),
resizing the vocabulary with the masked-LM decoder tied, ``_from_config``.

The class attributes are the ones transformers' Trainer, PEFT and transformers' own model tests
read (``_supports_sdpa``, ``supports_gradient_checkpointing``, ``_keep_in_fp32_modules``, ...).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

from .config import ATTENTION_IMPLEMENTATIONS, ConfigError


def tied_decoder(weight: nn.Parameter, bias: nn.Parameter) -> nn.Linear:
    """The masked-LM decoder as transformers exposes it (``get_output_embeddings()``): an
    ``nn.Linear`` holding the word embeddings' own weight ``[vocab, hidden]`` (tied: the same
    Parameter) and the head's bias ``[vocab]``; not a submodule (the head reads the Parameters)."""
    decoder = nn.Linear(1, 1, bias=False, device="meta")
    decoder.weight, decoder.bias = weight, bias
    decoder.in_features, decoder.out_features = weight.shape[1], weight.shape[0]
    return decoder


def resized_rows(old: torch.Tensor, size: int, mean_resizing: bool, std: Optional[float]) -> torch.Tensor:
    """``old [n, ...]`` -> ``[size, ...]`` (a new tensor): the first ``min(n, size)`` rows kept;
    new rows the mean of the old ones (``mean_resizing``), else drawn from N(0, ``std``) (zeros
    when ``std`` is None: a bias)."""
    kept = min(size, old.shape[0])
    new = old.detach().new_empty((size, *old.shape[1:]))
    with torch.no_grad():
        new[:kept] = old[:kept]
        if size > kept:
            if mean_resizing:
                new[kept:] = old.mean(0)
            elif std is None:
                new[kept:] = 0
            else:
                new[kept:].normal_(0.0, std)
    return new


def check_attention_implementation(name: Optional[str]) -> str:
    """``None`` -> ``"sdpa"``; ``"eager"`` / ``"sdpa"`` as is; anything else a ConfigError."""
    if name is None:
        return "sdpa"
    if name not in ATTENTION_IMPLEMENTATIONS:
        raise ConfigError(f'Specified `attn_implementation="{name}"` is not supported; use one of '
                          f"{', '.join(ATTENTION_IMPLEMENTATIONS)} (bert-lrp has no flash/flex attention)")
    return name


class TransformersMethods:
    """Mixed into every family's ``*PreTrainedModel`` (an ``nn.Module`` with ``self.config``)."""

    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False
    _keep_in_fp32_modules: tuple = ()
    _keep_in_fp32_modules_strict: tuple = ()
    _no_split_modules = ["BertEmbeddings", "BertLayer", "TransformerBlock"]
    _skip_keys_device_placement = None
    _keys_to_ignore_on_load_missing = None
    _keys_to_ignore_on_load_unexpected = None
    _keys_to_ignore_on_save = None
    _tied_weights_keys: Dict[str, str] = {}
    # the masked-LM head's bias Parameter, as a dotted path (None: the model has no decoder)
    decoder_bias_path: Optional[str] = None
    # where the masked-LM head keeps its own decoder (an nn.Linear) when the config's
    # tie_word_embeddings is False, as a dotted path (None: the model has no decoder)
    untied_decoder_path: Optional[str] = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def _from_config(cls, config: Any, *args: Any, **kwargs: Any):
        """transformers' ``_from_config``: a fresh model of ``config`` (ours or transformers');
        ``attn_implementation=`` and ``dtype=`` / ``torch_dtype=`` as ``from_pretrained`` takes them."""
        dtype = kwargs.pop("dtype", kwargs.pop("torch_dtype", None))
        implementation = kwargs.pop("attn_implementation", None)
        model = cls(config, *args, **kwargs)
        if implementation is not None:
            model.set_attn_implementation(implementation)
        return model.to(dtype) if isinstance(dtype, torch.dtype) else model

    from_config = _from_config

    # ------------------------------------------------------------ attention switch
    def set_attn_implementation(self, name: str) -> None:
        """``"sdpa"``: PyTorch's fused attention in a plain forward; ``"eager"``: the explicit
        softmax. Attribution (a RuleSet) always takes the explicit path: the same relevance."""
        self.config._attn_implementation = check_attention_implementation(name)

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        return True

    @classmethod
    def _can_set_experts_implementation(cls) -> bool:
        return False  # no mixture of experts

    # ------------------------------------------------------- activation checkpointing
    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: Optional[Dict[str, Any]] = None,
                                        every_n_layers: int = 1, offload: bool = False) -> None:
        """Recompute encoder layers in the backward pass instead of storing their activations
        (training only, not under attribution rules): every ``every_n_layers``-th layer.
        ``{"use_reentrant": True|False}`` (default True, as transformers); with frozen embeddings,
        re-entrant checkpoints need :meth:`enable_input_require_grads`. ``offload`` is refused."""
        options = dict(activation_checkpointing_kwargs or {})
        unknown = sorted(set(options) - {"use_reentrant", "preserve_rng_state"})
        if unknown:
            raise TypeError(f"activation_checkpointing_kwargs: unexpected key {unknown[0]!r} "
                            "(use_reentrant, preserve_rng_state)")
        if offload:
            raise TypeError("activation_checkpointing_enable(offload=True) is not supported (no accelerator offload)")
        if not isinstance(every_n_layers, int) or every_n_layers < 1:
            raise ValueError(f"every_n_layers must be a positive integer, got {every_n_layers!r}")
        options.setdefault("use_reentrant", True)
        for module in self.modules():
            if hasattr(module, "checkpoint_options"):
                module.checkpoint_options = options
                module.checkpoint_every = every_n_layers

    def activation_checkpointing_disable(self) -> None:
        for module in self.modules():
            if hasattr(module, "checkpoint_options"):
                module.checkpoint_options = None

    @property
    def is_activation_checkpointing(self) -> bool:
        return any(getattr(m, "checkpoint_options", None) is not None for m in self.modules())

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[Dict[str, Any]] = None,
                                      **kwargs: Any) -> None:
        """transformers' older name of :meth:`activation_checkpointing_enable`."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.activation_checkpointing_disable()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.is_activation_checkpointing

    # ------------------------------------------------------------ adapters (PEFT)
    def enable_input_require_grads(self) -> None:
        """Make the word embeddings' output require grad (frozen embeddings + adapters or
        re-entrant checkpointing still give gradients to the layers)."""
        if getattr(self, "_require_grads_hook", None) is None:
            def require_grad(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
                output.requires_grad_(True)
            self._require_grads_hook = self.get_input_embeddings().register_forward_hook(require_grad)

    def disable_input_require_grads(self) -> None:
        hook = getattr(self, "_require_grads_hook", None)
        if hook is not None:
            hook.remove()
            self._require_grads_hook = None

    # --------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def untied_decoder(self) -> Optional[nn.Linear]:
        """The masked-LM head's own decoder ``nn.Linear`` (``weight [vocab, hidden]``, ``bias
        [vocab]``) of a model built with ``tie_word_embeddings=False``; None when the decoder reads
        the word embeddings (tied) or the model has no decoder."""
        if self.untied_decoder_path is None:
            return None
        owner, _, name = self.untied_decoder_path.rpartition(".")
        module = getattr(self.get_submodule(owner) if owner else self, name, None)
        return module if isinstance(module, nn.Linear) else None

    def get_output_embeddings(self) -> Optional[nn.Linear]:
        """The masked-LM decoder, None without one: tied, an ``nn.Linear`` holding the word
        embeddings' own Parameter and the head's bias; untied, the head's own decoder."""
        if self.decoder_bias_path is None:
            return None
        untied = self.untied_decoder()
        if untied is not None:
            return untied
        return tied_decoder(self.get_input_embeddings().weight, self.get_parameter(self.decoder_bias_path))

    def set_output_embeddings(self, decoder: Any) -> None:
        """A new decoder (``weight [vocab, hidden]``, optional ``bias [vocab]``). Tied, the word
        embeddings take its weight (and the head its bias); untied, it replaces the head's decoder."""
        if self.decoder_bias_path is None:
            raise AttributeError(f"{type(self).__name__} has no output embeddings (no masked-LM decoder)")
        if self.untied_decoder() is not None:
            owner, _, name = self.untied_decoder_path.rpartition(".")
            setattr(self.get_submodule(owner) if owner else self, name, decoder)
            return
        self.get_input_embeddings().weight = decoder.weight
        if getattr(decoder, "bias", None) is not None:
            self._set_parameter(self.decoder_bias_path, decoder.bias)

    def tie_weights(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: a tied decoder reads the word embeddings' Parameter itself (an untied one
        stays untied, as transformers leaves it with ``tie_word_embeddings=False``)."""

    def post_init(self) -> None:
        """transformers' hook that initialises what ``__init__`` left: nothing here (every model
        initialises its weights in ``__init__``), so calling it never re-draws a trained or
        resized weight."""

    def resize_token_embeddings(self, new_num_tokens: Optional[int] = None, pad_to_multiple_of: Optional[int] = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """Resize the word embeddings ``[vocab, hidden]`` and the masked-LM decoder (its bias; an
        untied decoder's weight too) to ``new_num_tokens`` rounded up to ``pad_to_multiple_of``;
        kept rows keep their values, new rows are the mean of the old ones (``mean_resizing``) or
        as at initialisation (weights drawn, biases zero). ``config.vocab_size`` follows. Returns
        the (new) word embeddings."""
        old = self.get_input_embeddings()
        if new_num_tokens is None and pad_to_multiple_of is None:
            return old
        size = old.num_embeddings if new_num_tokens is None else new_num_tokens
        if pad_to_multiple_of is not None:
            if isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, int):
                raise ValueError(f"pad_to_multiple_of must be an integer, got {pad_to_multiple_of!r}")
            if pad_to_multiple_of <= 0:
                raise ValueError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
            size = -(-size // pad_to_multiple_of) * pad_to_multiple_of
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"new_num_tokens must be a positive integer, got {new_num_tokens!r}")
        std = self.config.initializer_range
        new = nn.Embedding(size, old.embedding_dim, padding_idx=old.padding_idx if (old.padding_idx or 0) < size
                           else None, device=old.weight.device, dtype=old.weight.dtype)
        new.weight = nn.Parameter(resized_rows(old.weight, size, mean_resizing, std))
        self.set_input_embeddings(new)
        untied = self.untied_decoder()
        if untied is not None:
            decoder = nn.Linear(untied.in_features, size, bias=untied.bias is not None,
                                device=untied.weight.device, dtype=untied.weight.dtype)
            decoder.weight = nn.Parameter(resized_rows(untied.weight, size, mean_resizing, std))
            if untied.bias is not None:
                decoder.bias = nn.Parameter(resized_rows(untied.bias, size, mean_resizing, None))
            self.set_output_embeddings(decoder)
        if self.decoder_bias_path is not None:
            bias = self.get_parameter(self.decoder_bias_path)
            if bias.shape[0] != size:  # (DistilBERT's untied decoder holds it: resized above)
                self._set_parameter(self.decoder_bias_path, nn.Parameter(resized_rows(bias, size, mean_resizing, None)))
        self.config.vocab_size = size
        for module in self.modules():  # the encoder's config may be another object
            config = getattr(module, "config", None)
            if config is not None and config is not self.config:
                config.vocab_size = size
        return new

    def _set_parameter(self, path: str, parameter: nn.Parameter) -> None:
        owner, _, name = path.rpartition(".")
        setattr(self.get_submodule(owner) if owner else self, name, parameter)
