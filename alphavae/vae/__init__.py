"""The VAEs (method.md §2): one loader for every SPEC, the RGB → RGBA conversion, one reconstruct, and the
pretraining of the project's own small RGB VAE."""
