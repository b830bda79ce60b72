"""Figures and widgets: they draw what the layers below computed and compute nothing new."""
