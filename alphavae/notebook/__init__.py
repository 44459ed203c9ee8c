"""What the notebooks draw: figures and ipywidgets panels. The only part of the package that imports
matplotlib or ipywidgets; nothing outside it imports this."""
