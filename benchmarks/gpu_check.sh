#!/usr/bin/env bash
# One-command GPU check for a person with ~10 minutes on one CUDA GPU (H100/H200 class):
#   bash benchmarks/gpu_check.sh            (or: make gpu-check)
# 1. the CUDA tests: bf16 autocast, pinned batches, fused attention kernels, no host sync inside a training step,
#    packed == two-call forwards, resume states written on the GPU;
# 2. the GPU benchmarks: the bare backbone (bf16 MFU at BERT-base) and the real training step (`train_step`:
#    samples/s, host reads per step, model FLOP/s, MFU of the multitask step at the `paper` width).
# Results: benchmarks/results/gpu.json (copy the tables into docs/benchmarks.md with the date and the GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make install-dev
PY=.venv/bin/python
export KEDRO_DISABLE_TELEMETRY=true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'CUDA is not available to torch')"
$PY -m pytest -q -p no:cacheprovider tests/training/test_gpu_path.py tests/models/test_packing.py \
    tests/training/test_host_reads.py tests/training/test_resume_devices.py
$PY -m benchmarks.run --device cuda --only backbone,train_step --out benchmarks/results/gpu.json
