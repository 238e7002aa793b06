"""The version of onnx-zoo, in a module of its own: the package's modules read it without importing its face."""

__version__ = "0.1.0"
