#!/usr/bin/env python
"""Run transformers' own BERT model tests with bert-lrp's classes put in place of transformers'.

Not part of CI, and it downloads nothing: give it a ``tests`` folder of transformers 5.23.0 that
holds ``test_modeling_common.py``, ``test_configuration_common.py``, ``test_pipeline_mixin.py``
(all three in the source package: ``pip download transformers==5.23.0 --no-binary :all: --no-deps``)
and ``models/bert/test_modeling_bert.py`` plus what it imports (``generation/test_utils.py``), from
transformers' repository at the tag ``v5.23.0`` (a checkout's ``tests`` folder has everything).

    python scripts/run_transformers_bert_tests.py --tests path/to/transformers/tests [--classes ours|theirs] [-- pytest args]

``--classes theirs`` runs the file as it is (the reference count); ``ours`` (default) replaces
transformers' BERT model classes (kept: transformers' ``BertConfig``, and ``BertLMHeadModel`` unless
``--swap-lm-head``: ours is a refusal) by bert-lrp's in the collected test module: its globals, its
test classes' model lists, and the auto mappings it imported (``MODEL_FOR_PRETRAINING_MAPPING``, read
by identity). The pytest summary lists each test that fails; docs/models.md explains them.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# the classes swapped in (bert-lrp's of the same name); transformers' BertConfig is kept
CLASSES = ("BertModel", "BertForSequenceClassification", "BertForTokenClassification", "BertForMaskedLM",
           "BertForPreTraining", "BertForQuestionAnswering", "BertForMultipleChoice",
           "BertForNextSentencePrediction")
# ours refuses to be built (bert-lrp has no decoder): swapped in only with --swap-lm-head, where every
# test that loops over all model classes then fails on that class
LM_HEAD = "BertLMHeadModel"

PLUGIN = '''"""pytest plugin written by run_transformers_bert_tests.py: bert-lrp's classes in place of
transformers' in the collected test modules (their globals and the model-class lists of their test
classes). The auto mappings the module imported (config class -> model class, looked up by identity) get
ours in place too. transformers' own models (BertLMHeadModel, pipelines' internals) still build
theirs inside."""
import bert_lrp

SWAP = {{name: getattr(bert_lrp, name) for name in {classes!r}}}
LISTS = ("all_model_classes", "pipeline_model_mapping", "all_generative_model_classes")


def _swap(value):
    if isinstance(value, type) and value.__module__.startswith("transformers.") and value.__name__ in SWAP:
        return SWAP[value.__name__]
    if isinstance(value, (tuple, list)):
        return type(value)(_swap(v) for v in value)
    if isinstance(value, dict):
        return {{k: _swap(v) for k, v in value.items()}}
    return value


def _swapped_mapping(mapping):
    """transformers' auto mapping (config class -> model class) as a dict with ours in place:
    the test module looks classes up in it by identity (MODEL_FOR_PRETRAINING_MAPPING)."""
    return {{key: _swap(value) for key, value in mapping.items()}}


def pytest_collection_modifyitems(session, config, items):
    modules = {{item.module for item in items if getattr(item, "module", None) is not None}}
    for module in modules:
        for name, ours in SWAP.items():
            if hasattr(module, name):
                setattr(module, name, ours)
        for name, value in list(vars(module).items()):
            if name.endswith("_MAPPING") and type(value).__name__ == "_LazyAutoMapping":
                setattr(module, name, _swapped_mapping(value))
        for holder in list(vars(module).values()):
            if isinstance(holder, type):
                for attribute in LISTS:
                    if attribute in vars(holder):
                        setattr(holder, attribute, _swap(vars(holder)[attribute]))
'''


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", required=True, type=Path, help="transformers 5.23.0's tests folder")
    parser.add_argument("--classes", choices=("ours", "theirs"), default="ours")
    parser.add_argument("--swap-lm-head", action="store_true",
                        help="also swap in our BertLMHeadModel (a refusal: decoders are not supported)")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    tests = args.tests.resolve()
    bert_file = tests / "models" / "bert" / "test_modeling_bert.py"
    missing = [p for p in (tests / "test_modeling_common.py", tests / "test_configuration_common.py",
                           tests / "test_pipeline_mixin.py", bert_file) if not p.is_file()]
    if missing:
        print(f"error: --tests {tests}: missing {', '.join(str(p) for p in missing)}", file=sys.stderr)
        return 2
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", str(bert_file),
               *args.pytest_args]
    with tempfile.TemporaryDirectory() as plugin_dir:
        if args.classes == "ours":
            classes = CLASSES + ((LM_HEAD,) if args.swap_lm_head else ())
            Path(plugin_dir, "swap_in_bert_lrp.py").write_text(PLUGIN.format(classes=classes))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [plugin_dir, str(Path(__file__).resolve().parents[1]),
                                                              env.get("PYTHONPATH")]))
            command[3:3] = ["-p", "swap_in_bert_lrp"]
        # transformers' tests import each other as the package `tests`: run from its parent
        return subprocess.call(command, cwd=tests.parent, env=env)


if __name__ == "__main__":
    sys.exit(main())
