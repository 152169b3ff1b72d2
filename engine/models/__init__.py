"""The vertebra models: network definitions, ONNX export, model card, and the shipped weights.

``contract`` (tensor names, classes, metadata) imports no torch and is what runtimes read;
``networks``, ``export`` and ``card``'s training side need torch and are imported explicitly.
Trained weights live here as ``vertebra_seg.onnx`` and ``vertebra_cls.onnx`` (see
``MODEL_CARD.md``); real weights trained elsewhere are loaded with ``VCF_MODELS__DIR``.
"""
