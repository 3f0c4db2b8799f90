"""Analyses across trained models' predictions (no training, no JAX).

    modalities   what each modality model (RGB, depth, saliency, blur, ... versions of one dataset,
                 Lisaius & Wehrwein, SCIENCE.md §5) explains, per dataset category: SRCC / PLCC /
                 MAE with bootstrap CIs, covariance analyses, R² gains over a base run
                 (``aesthetics_jax.analysis.modalities.analyze``; CLI ``aesthetics-jax analyze
                 modalities``)
    groups       the categories of a dataset build's records (AVA tags / challenges, EVA content
                 categories / factor flags, AADB attributes) as ``{image id: [group, ...]}``
    report       the files of an analysis: CSVs, PNG heat maps and bar charts, report.md,
                 summary.json

The modules read predictions CSVs written by ``aesthetics_jax.evaluate.aesthetic`` and dataset
builds through ``aesthetics_jax.data``; nothing here imports JAX or TensorFlow.
"""
