"""What the notebooks draw: figures and ipywidgets panels. The only part of the package that imports
matplotlib or ipywidgets; nothing outside it imports this.

Importing it applies :data:`alphavae.notebook.plotting.STYLE` (110 dpi, legible font sizes) once, for every
figure the notebooks draw.
"""

from alphavae.notebook.plotting import apply_style

apply_style()
