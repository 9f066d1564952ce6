"""Export to ONNX (the official decoder interface) and running the exported graphs with ONNX Runtime."""
