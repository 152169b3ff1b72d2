"""Serving the models with Triton Inference Server.

* :mod:`~engine.serving.spec`: what each served model looks like (names, tensors, shapes,
  dtypes, batching), declared once from :mod:`engine.models.contract` and the ONNX metadata;
  the repository generator, the TensorRT builder and the Triton client all read it.
* :mod:`~engine.serving.onnx_facts`: reads and checks the ONNX files (metadata, checker,
  graph shapes against the specs).
* :mod:`~engine.serving.repository`: writes a Triton model repository for the ``cpu``
  profile (ONNX Runtime in the Python backend) or the ``gpu`` profile (TensorRT plans).
* :mod:`~engine.serving.tensorrt_build`: builds the FP16 plans of the ``gpu`` profile.
* :mod:`~engine.serving.pipeline_core`: the ``vcf_pipeline`` computation and its tensor
  encoding, shared by the server (Python backend) and the client (decoding).
* :mod:`~engine.serving.python_models`: the Triton Python-backend model classes.
* :mod:`~engine.serving.shm`: system / CUDA shared-memory regions for the client.

Modules that run inside Triton (``pipeline_core``, ``python_models``) import numpy, scipy and
the light parts of ``engine`` only; nothing here imports torch, DALI or pydicom.
"""
