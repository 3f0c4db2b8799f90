"""Export and sharing of trained models.

    onnx.py         ``export_onnx(model, variables, ...)``: jax2onnx export of the model's pure
                    ``apply`` (dynamic batch, named outputs, preprocessing in the metadata).
    saved_model.py  ``export_saved_model(...)``: jax2tf -> TF SavedModel (the ``[tf]`` extra).
    bundle.py       shareable model bundles: ``pack`` a workdir, ``verify``, ``load``, ``unpack``.
    commands.py     ``aesthetics-jax export``.

Each module imports its heavy dependencies (jax2onnx, TensorFlow, Orbax) only when used.
"""
