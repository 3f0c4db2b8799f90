"""Weight import into the Flax models: Keras (by layer name; `convert.keras`), later torch /
safetensors state dicts and CLIP checkpoints. Submodules are imported explicitly, e.g.
`from aesthetics_jax.convert import keras as keras_convert`; none of them imports TensorFlow."""
