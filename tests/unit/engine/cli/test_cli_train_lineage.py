"""`vcfscreen train --seg-init`: the card says what a continued segmenter was trained on before."""

from __future__ import annotations

from pathlib import Path

from engine.cli.train_cmd import lineage


def test_a_continued_segmenter_records_its_whole_history_as_one_chain():
    first = {"continued_from": "random initialisation", "steps": 800, "minutes": 28.0, "data": "64 phantoms"}
    second = {"continued_from": lineage(Path("vertebra_seg.onnx"), first), "steps": 1600, "minutes": 13.7,
              "data": "64 phantoms + 36 clinical-size"}
    chain = lineage(Path("vertebra_seg.onnx"), second)
    assert chain == ("random initialisation; then 800 steps, 28.0 min, on 64 phantoms; "
                     "then 1600 steps, 13.7 min, on 64 phantoms + 36 clinical-size")
    assert "{" not in chain


def test_a_file_without_a_recorded_recipe_says_so():
    assert lineage(Path("/elsewhere/seg.onnx"), None) == "seg.onnx (its recipe was not recorded beside it)"
