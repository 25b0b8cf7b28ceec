from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="scratchformers",
    version="0.1.0",
    description="GPT-2 and LLaMA-2 style language models written from scratch, native to the Hugging Face ecosystem",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["scratchformers", "scratchformers.*", "hub_scripts", "hub_scripts.*"]),
    package_data={"hub_scripts": ["templates/*.j2"], "scratchformers": ["cli_help.json"]},
    # the console command's entry: prints help texts without importing torch (scratchformers_cli.py)
    py_modules=["scratchformers_cli"],
    install_requires=[
        "torch>=2.4",
        "transformers>=5.24,<6",
        "tokenizers>=0.22",
        "datasets>=4",
        "accelerate>=1.10",
        "peft>=0.18",
        "huggingface_hub>=1.0",
        "safetensors>=0.4",
        "pyyaml>=6",
        "matplotlib>=3.7",
        "tensorboard>=2.15",
        "tqdm>=4.60",
    ],
    extras_require={
        "onnx": ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.5"],
        "gguf": ["gguf>=0.17", "llama-cpp-python>=0.3.16"],
        "quantize": ["torchao>=0.13"],
        "serve": ["fastapi>=0.110", "uvicorn>=0.30", "openai>=1.40"],
        # DPO / GRPO: the TRL line CI tests (its trainers' internals change between minor releases)
        "align": ["trl>=1.16,<1.17"],
        # llama-cpp-python is not here: it compiles llama.cpp (about 5 minutes on 2 cores); .ci/run installs it (with
        # its [server] extra, for llama_cpp.server), and the llama.cpp tests skip without it
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "onnx>=1.17", "onnxruntime>=1.20",
                "onnxscript>=0.5", "gguf>=0.17", "torchao>=0.13", "pytest-markdown-docs>=0.9", "mkdocs>=1.6",
                "mkdocs-material>=9.5", "fastapi>=0.110", "uvicorn>=0.30", "openai>=1.40", "trl>=1.16,<1.17"],
    },
    entry_points={"console_scripts": ["scratchformers=scratchformers_cli:main"]},
)
