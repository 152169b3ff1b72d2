"""Inference backends: in-process ONNX Runtime and Triton Inference Server."""
