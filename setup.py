"""aesthetics_jax: image aesthetic assessment in JAX/Flax (NIMA, Aesthetics-XAI, modality NIMA, CG-IAA)."""

import setuptools

# One dependency set that installs together on Python 3.11 (measured, see DESIGN.md).
# Training, evaluation and prediction import none of TensorFlow: it lives in the [tf] extra.
CORE = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.11.36",  # jax2onnx caps it below 0.11.37
    "tensorflow-datasets==4.9.10",
    "importlib_resources",  # TFDS needs it on 3.11 and does not declare it
    "grain==0.2.18",
    "array-record==0.8.6",
    "clu==0.0.12",
    "ml-collections==1.1.0",
    "absl-py",
    "numpy>=2.0",
    "pandas",
    "matplotlib",
    "opencv-python-headless==5.0.0.93",
    "tensorboard",  # event files are written with its pure-python EventFileWriter (no TF)
    "h5py",
    "safetensors",
    "simplejpeg==1.9.0",  # strict libjpeg-turbo decode: image checks refuse JPEGs libjpeg only warns about
    "scikit-image==0.26.0",  # ships most photographs the demo dataset is rendered from
    "scikit-learn",  # ships two more (china.jpg, flower.jpg): the demo is the same in every install
    "openai-clip==1.0.1",  # ships CLIP's BPE vocabulary (the tokenizer works offline; no torch needed)
    "tokenizers==0.23.3",  # GPT-2 byte-level BPE from the user's vocab.json + merges.txt (critiques)
]
EXTRAS = {
    # ONNX export and the onnxruntime prediction backend.
    "export": ["onnx==1.23.2", "onnxruntime==1.32.0", "jax2onnx==0.17.1"],
    # TF SavedModel export through jax2tf (TF Serving); never imported by training or prediction.
    "tf": ["tensorflow-cpu==2.21.0"],
    # Parity references and weight sources for the converters' tests (Keras 3 is in dev):
    # torchvision, transformers' CLIPModel, timm (throughput-benchmark peers), grad-cam
    # (pytorch-grad-cam: the Grad-CAM family's reference), open_clip (benchmarks/clip_vlap.py's
    # peer; its dependencies are all already here). torch 2.14.1 with
    # torchvision 0.29.1 is the pair pip installs from the CI machine's local wheels.
    "torch": ["torch==2.14.1", "torchvision==0.29.1", "transformers==5.23.0", "timm==1.0.31", "grad-cam==1.5.7",
              "open_clip_torch==3.3.0"],
    "dev": ["pytest", "scipy", "keras==3.15.1"],
}
EXTRAS["dev"] = EXTRAS["dev"] + EXTRAS["export"] + EXTRAS["torch"]

setuptools.setup(
    name="aesthetics_jax",
    version="0.1.0",
    description=__doc__,
    packages=setuptools.find_packages(include=["aesthetics_jax", "aesthetics_jax.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["aesthetics-jax=aesthetics_jax.cli:main"]},
)
