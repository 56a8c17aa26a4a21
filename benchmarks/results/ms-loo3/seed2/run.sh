#!/bin/bash
# issue 13 ablation, seed 2: stage-3 recipe with grown attention (levels 2 4, sqrt) and its control
cd /work/main
export OMP_NUM_THREADS=1 PYTHONPATH=/work/snap5/src PATH=/work/main/.venv/bin:$PATH
start=$(date +%s)
common="--data ../shared/data/open-ms-lesjak2017 --sims runs/ms-rand1mm --models fanet-seg --steps 500 --lr 3e-4 --p-lesion 0.35 --threads 1 --seed 2 --init-dir runs/ms-loo2"
python /work/snap5/scripts/ms_loo_recipe.py $common --attention-levels 2 4 --attention-scale sqrt --work runs/ms-loo3s2
echo "loo3s2 $(( $(date +%s) - start )) s" >> runs/ms-loo3-times.txt
python /work/snap5/scripts/ms_loo_recipe.py $common --work runs/ms-loo3s2c
echo "loo3s2c $(( $(date +%s) - start )) s" >> runs/ms-loo3-times.txt
for arm in "" c; do
python -m napari_fanet evaluate --task ms --data ../shared/data/open-ms-lesjak2017 \
  --models "runs/ms-loo3s2$arm/fanet-seg-without-{subject}/last.pt" --modes flair t1-flair t1-t2-flair \
  --device cpu --out runs/eval-ms-loo3s2$arm-fanet > runs/eval-ms-loo3s2$arm-fanet.log 2>&1
echo "eval3s2$arm $(( $(date +%s) - start )) s" >> runs/ms-loo3-times.txt
done
