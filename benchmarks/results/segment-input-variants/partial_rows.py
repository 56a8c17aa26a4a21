"""The first rows of ``segment_input_variants.py`` from a stopped run's outputs.

Patient 19's run after the cavity filling (commit bdcb107) was stopped after its first three
copies to free the CPU; this scores the masks it wrote, as the benchmark does::

    PYTHONPATH=src:benchmarks python benchmarks/results/segment-input-variants/partial_rows.py \\
        ../shared/data/open-ms-lesjak2017/patient19 WORK/patient19 3 \\
        benchmarks/results/segment-input-variants/patient19-after-cavity-filling
"""

import json
import sys
from pathlib import Path

import nibabel as nib

import segment_input_variants as variants

subject, work, count, out = (
    Path(sys.argv[1]),
    Path(sys.argv[2]),
    int(sys.argv[3]),
    Path(sys.argv[4]),
)
flair = nib.load(subject / "flair.nii.gz")
reference = nib.load(subject / "consensus_lesions.nii.gz")
names = list(variants.variants(flair))[:count]
rows, first = [], None
for index, name in enumerate(names):
    path = work / f"{index:02d}" / "out" / "lesion_mask.nii.gz"
    scores, mask = variants.score(path, flair, reference, first)
    first = mask if first is None else first
    shape = list(nib.load(path).shape)
    rows.append({"copy": name, "shape": shape, **scores})
note = f"\nRows 0-{count - 1} only (the run was stopped after them).\n"
out.mkdir(parents=True, exist_ok=True)
(out / "table.md").write_text(variants.table(rows, subject.name) + note)
(out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
print((out / "table.md").read_text())
