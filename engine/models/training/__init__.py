"""Training the segmentation and classification models on the project's phantoms.

:mod:`.data` turns phantom studies into model-grid samples through the same DALI
preprocessing the screening uses; :mod:`.segmenter` and :mod:`.classifier` hold the loops.
Everything is seeded: the same seeds and step counts give the same weights on one machine.
"""
