"""What vcfscreen hands to people and archives besides the JSON result.

- :mod:`.keyimage`: a sagittal key image per study (PNG), levels and fractures marked;
- :mod:`.sr`: a DICOM Comprehensive 3D SR (TID 1500) of the findings, coded per
  :mod:`.codes`;
- :mod:`.jsonl`: the results file, one flushed line per study;
- :mod:`.summary`: the counts and timings of a run.

The screening core knows nothing of these; the CLI and the streaming sinks call them.
"""
