"""The ALPHA metric (method.md §1): compositing over 9 backgrounds, per-background RGB metrics, alpha-only
errors, folder evaluation, LPIPS with real ImageNet backbones, and controlled degradations to test it with."""
