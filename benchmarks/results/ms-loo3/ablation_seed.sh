#!/bin/bash
# Issue 13 ablation, one seed: the stage-3 recipe with the grown level-2 attention (levels 2 4,
# sqrt energies) and its control (same steps, data and seed, attention unchanged), then both
# scored leave-one-out on the real patients. Run from the repository root; seeds 2 and 3 of
# benchmarks/results/fa_ablation_loo.md were run this way (from a snapshot of src/):
#   bash benchmarks/results/ms-loo3/ablation_seed.sh 2
set -euo pipefail
seed=${1:?usage: ablation_seed.sh SEED (an integer, e.g. 2)}
[[ $seed =~ ^[0-9]+$ ]] || { echo "expected SEED as a non-negative integer, got '$seed'" >&2; exit 2; }
export OMP_NUM_THREADS=1 PYTHONPATH=src
common=(--data ../shared/data/open-ms-lesjak2017 --sims runs/ms-rand1mm --models fanet-seg
  --steps 500 --lr 3e-4 --p-lesion 0.35 --threads 1 --seed "$seed" --init-dir runs/ms-loo2)
python scripts/ms_loo_recipe.py "${common[@]}" --attention-levels 2 4 --attention-scale sqrt \
  --work "runs/ms-loo3s$seed"
python scripts/ms_loo_recipe.py "${common[@]}" --work "runs/ms-loo3s${seed}c"
for arm in "" c; do
  python -m napari_fanet evaluate --task ms --data ../shared/data/open-ms-lesjak2017 \
    --models "runs/ms-loo3s$seed$arm/fanet-seg-without-{subject}/last.pt" \
    --modes flair t1-flair t1-t2-flair --device cpu --out "runs/eval-ms-loo3s$seed$arm-fanet"
done
