#!/usr/bin/env bash
# The GPU measurements in one call, on a lent GPU machine (JAX, no TensorFlow there; ../shared/ENVIRONMENT.md).
#
#   bash benchmarks/gpu.sh OUT_DIR              # on the GPU machine: writes everything under OUT_DIR
#   bash benchmarks/gpu.sh --dry-run OUT_DIR    # here, on the CPU: the same steps on tiny synthetic data, 1 epoch
#
# What it needs there, in the git-ignored folder .gpu/ (carried by the device tool's `carry`):
#   .gpu/wheels/   keras==3.15.1, namex, optree wheels for the machine's Python (3.12, manylinux x86_64)
#   .gpu/data/toys/Toys_and_Games.txt
# Prepare it here with:
#   mkdir -p .gpu/data/toys && cp ../shared/data/toys/Toys_and_Games.txt .gpu/data/toys/
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       --no-deps -d .gpu/wheels keras==3.15.1 namex optree
#
# Steps (each writes one file under OUT_DIR; at most 8 come back from the machine):
#   devices.txt                       JAX's devices
#   jax-sasrec-full.json, jax-fame-full.json, jax-fame-sampled.json, jax-fame-every-prefix.json
#                                     speed-table rows: s/epoch, time to validation NDCG@10 >= 0.06, evaluation time
#   sampled_step_scaling.json         FAME's sampled-softmax step at 10^4 / 10^5 / 10^6 items
#   distributed.log                   `keras-fame train --distribute data` for 1 epoch on the device(s)
# Copy the rows into results/speed_table/ afterwards; `python benchmarks/speed_table.py table` tags the machine.
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; shift; fi
out=${1:?usage: bash benchmarks/gpu.sh [--dry-run] OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
mkdir -p "$out"
export KERAS_BACKEND=jax PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2

if [ "$dry_run" = 1 ]; then
  # Tiny synthetic Toys-format data, one epoch per row, JAX on the CPU: checks every step runs.
  data=$(mktemp -d)
  mkdir -p "$data/toys"
  "$python" -c "
from keras_fame.data import write_sequences
from keras_fame.data.synthetic import planted_facets
write_sequences('$data/toys/Toys_and_Games.txt', planted_facets(num_users=120, max_length=10, seed=0)[0])"
  epochs=1 items="1000 5000" steps=2
  export JAX_PLATFORMS=cpu
else
  data="$root/.gpu/data"
  [ -f "$data/toys/Toys_and_Games.txt" ] || { echo "error: $data/toys/Toys_and_Games.txt is missing (see the header)" >&2; exit 2; }
  if ! "$python" -c "import keras" 2>/dev/null; then
    [ -d "$root/.gpu/wheels" ] || { echo "error: keras is not installed and $root/.gpu/wheels is missing" >&2; exit 2; }
    "$python" -m pip install --quiet --no-index --find-links "$root/.gpu/wheels" keras namex optree
  fi
  epochs=15 items="10000 100000 1000000" steps=20
fi

"$python" -c "import jax; print(jax.devices())" > "$out/devices.txt"
cat "$out/devices.txt"

for row in "sasrec full" "fame full" "fame sampled" "fame full --every-prefix"; do
  set -- $row
  name="jax-$1-$2${3:+-every-prefix}"
  echo "row $name"
  "$python" "$root/benchmarks/speed_table.py" one --backend jax --model "$1" --loss "$2" ${3:-} \
    --max-epochs "$epochs" --data-dir "$data" --out "$out/$name.json" > /dev/null
done

echo "sampled-softmax step against the catalogue"
# JAX gradients are dense, so LazyAdam would only repeat Adam there.
"$python" "$root/benchmarks/sampled_step_scaling.py" --items $items --steps "$steps" --optimizers adam \
  --out "$out/sampled_step_scaling.json"

echo "keras-fame train --distribute data"
"$python" -c "
import sys
from keras_fame.experiments.cli import main
sys.exit(main('toys', ['--data-dir', '$data', '--output-dir', '$out/run', '--epochs', '1', '--fame-epochs', '1',
                       '--text-init', 'none', '--distribute', 'data', '--verbose', '2']))" > "$out/distributed.log" 2>&1 \
  || { tail -20 "$out/distributed.log" >&2; exit 1; }
grep "FAME H=" "$out/distributed.log" | head -1
rm -rf "$out/run"  # the models: not needed back, and they would count against what comes back
echo "done: $out"
