"""Graph primitives shared by every cptpp area (imports torch/numpy/scipy only, never cptpp)."""
