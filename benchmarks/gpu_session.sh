#!/usr/bin/env bash
# One prepared device run that records every GPU figure the open issues ask for (about 8-10 min on an
# H100/H200). Prepare on the CPU machine first, from the repo root (about 45 MiB travels):
#   mkdir -p _carry/whl && cp -r ../shared/data/benchmarks/Set5 ../shared/data/benchmarks/B100 _carry/ \
#     && mkdir -p _carry/weights && cp ../shared/weights/*.pth _carry/weights/
#   .venv/bin/pip wheel -q --no-deps -w _carry/whl fvcore==0.1.5.post20221221 iopath==0.1.10 yacs termcolor ptflops==0.7.5
# then call the device tool twice (each part is sized to about 5 minutes on an H100):
#   command "bash benchmarks/gpu_session.sh demo report", carry ["_carry"], timeout_s 420
#   command "bash benchmarks/gpu_session.sh train speed", carry ["_carry"], timeout_s 420
# Dry run on a CPU: DATA=_carry/Set5 QUICK=1 OUT=/tmp/gpu_out bash benchmarks/gpu_session.sh demo report train speed
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
DATA=${DATA:-_carry/B100}
PY=${PY:-python3}
if ls _carry/whl/*.whl >/dev/null 2>&1 && ! $PY -c "import fvcore, ptflops" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site _carry/whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
LOG="$OUT/session.log"
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} >"$LOG" 2>&1
step() { echo -e "\n===== $* =====" | tee -a "$LOG"; }
PARTS=" $* "; [ -z "$*" ] && PARTS=" demo report train speed "
want() { [[ "$PARTS" == *" $1 "* ]]; }
RUNS=5; [ -n "${QUICK:-}" ] && RUNS=1

if want demo; then
step "1. test_demo.py: MLRN-entire and the four baselines on $DATA (challenge protocol, cold, warm)"
$PY test_demo.py --data_dir "$DATA" --model_id MLRN-entire --results_dir "$OUT" --no_save --runs $RUNS --ssim >>"$LOG" 2>&1
for pair in RFDN:rfdn_ntire2023_team00 RLFN:rlfn_ntire2024_team00 EFDN:efdn_ntire2025_team00 IMDN:imdn_ntire2022_baseline; do
  $PY test_demo.py --data_dir "$DATA" --model_id "${pair%%:*}" --weights "_carry/weights/${pair#*:}.pth" \
    --results_dir "$OUT" --no_save --runs $RUNS >>"$LOG" 2>&1
done
cat "$OUT/results.txt" >>"$LOG"
fi

if want report; then
step "2. python -m benchmarks: the five entries in Table 3, same-run ratio to RFDN"
$PY -m benchmarks --model_id MLRN-entire RFDN RLFN EFDN IMDN \
  --weights model_zoo/mlrn_entire_x4.pth _carry/weights/rfdn_ntire2023_team00.pth _carry/weights/rlfn_ntire2024_team00.pth \
            _carry/weights/efdn_ntire2025_team00.pth _carry/weights/imdn_ntire2022_baseline.pth \
  --data_dir "$DATA" --repeats $RUNS --markdown "$OUT/report.md" --csv "$OUT/report.csv" --plot "$OUT/report.png" \
  >/dev/null 2>>"$LOG"
$PY -m benchmarks --model_id MLRN-entire --sizes 256x256 339x510 --repeats 10 --markdown "$OUT/report_fixed.md" \
  --baseline_weights _carry/weights/rfdn_ntire2023_team00.pth >/dev/null 2>>"$LOG"
fi

if want train; then
step "3. training throughput (issue 5): HR-256 patches/s end to end"
SIZE="--steps 300"; [ -n "${QUICK:-}" ] && SIZE="--steps 2 --warmup 1 --batch_size 4 --patch_size 64"
for flags in "" "--bf16" "--bf16 --channels_last"; do
  $PY -m benchmarks.train_throughput --train_dir "$DATA/HR" $SIZE $flags >>"$LOG" 2>&1
done
fi

if want speed; then
  step "4. fast path and pipelined validation (issue 6)"
  LIMIT=""; [ -n "${QUICK:-}" ] && LIMIT="--limit 2"
  $PY -m benchmarks.speed --data_dir "$DATA" --psnr_dirs _carry/Set5 --out "$OUT/speed.md" $LIMIT --profile \
    --model_id MLRN-entire RFDN RLFN EFDN IMDN --weights - _carry/weights/rfdn_ntire2023_team00.pth \
    _carry/weights/rlfn_ntire2024_team00.pth _carry/weights/efdn_ntire2025_team00.pth _carry/weights/imdn_ntire2022_baseline.pth >>"$LOG" 2>&1
fi
date -u >>"$LOG"
ls -la "$OUT" >>"$LOG"
