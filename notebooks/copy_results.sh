#!/usr/bin/env bash
# Copy a sweep's raw results (no adapters, checkpoints or logs) into notebooks/results/: copy_results.sh SWEEP_DIR DEST
set -eu
src=$1 dest=$2
mkdir -p "$dest"
[ -f "$src/multirun.yaml" ] && cp "$src/multirun.yaml" "$dest/"
for job in "$src"/*/; do
  [ -f "$job/metrics.json" ] || continue
  j=$(basename "$job"); mkdir -p "$dest/$j"
  for f in .hydra config.yaml csv metrics.json samples.json wordings.json; do
    [ -e "$job/$f" ] && cp -r "$job/$f" "$dest/$j/"
  done
done
echo "copied $(ls -d "$dest"/*/ | wc -l) jobs to $dest"
