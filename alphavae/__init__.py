"""AlphaVAE, taught: RGBA images, the ALPHA metric, extending an RGB VAE to RGBA, and generating with it.

Every notebook imports this package; the command line (``alphavae ...``) is a thin layer over it.
"""

__version__ = "0.1.0"
