"""bertnb: BERT built from scratch, step by step, in PyTorch.

The notebooks build each piece inline; this package holds the finished versions they import.
"""

__version__ = "0.1.0"
