"""Launched by test_distributed.py under torchrun: trains briefly and prints its events."""

import json
import os
import sys
from pathlib import Path

from napari_fanet.engine.config import TrainConfig
from napari_fanet.engine.train import run_training
from napari_fanet.tasks.subjects import list_subjects, load_seg_subject

root, out = sys.argv[1:3]
subjects = [load_seg_subject(p) for p in list_subjects(root, "segmentation")]
config = TrainConfig(
    model="fanet-seg", steps=3, val_every=0, features=(8, 8, 8, 8, 16), batch_size=1,
    patch_size=(16, 16, 16), device="cpu", augment=False,
)  # fmt: skip
events = list(run_training(config, subjects, subjects[:1], out))
Path(out, f"events-rank{os.environ['RANK']}.json").write_text(json.dumps(events))
