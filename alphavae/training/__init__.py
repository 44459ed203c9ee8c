"""Training the RGBA VAE (method.md §3): configs validated at load, data and the held-out split, one checkpoint
format, the trainer, the notebook fine-tune, the ablation, and the rebuild of ``rgba-train`` from Debian's
``openclipart-png`` (``openclipart``)."""
