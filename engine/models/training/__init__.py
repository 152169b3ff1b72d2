"""Training the segmentation and classification models on the project's phantoms.

:mod:`.data` turns phantom studies into model-grid samples through the same DALI
preprocessing the screening uses; :mod:`.segmenter` and :mod:`.classifier` draw and score
their batches, and :mod:`.loop` runs the optimisation loop both share.
Everything is seeded: the same seeds and step counts give the same weights on one machine.
"""
