"""Zero-shot (prompt-based) image scoring with a converted CLIP: `zeroshot.clip_iqa` (CLIP-IQA).
Submodules are imported explicitly: `from aesthetics_jax.zeroshot import clip_iqa`."""
