#!/usr/bin/env bash
# The SmolLM2 loop on one CUDA device, and one round of the tiny model under 4-bit QLoRA on
# CUDA: one script, every figure under $OUT. For a lent GPU machine that has torch,
# transformers, peft and accelerate but no network (bitsandbytes and gguf come as wheels).
#
# The GGUF (98 MB) is more than one call may carry, so it travels in two parts, joined here:
#   here:    split -n 2 -d "$(python -c 'from codealign.models.named import gguf_source as g;
#                            print(g("smollm2-135m-instruct"))')" shared-gpu/smollm2.gguf.part
#   call 1:  carry shared-gpu/smollm2.gguf.part00 (+ the wheels), copy them to ~/gpu-carry
#   call 2:  carry shared-gpu/smollm2.gguf.part01, then: bash benchmarks/gpu_real_model.sh
#
#   GGUF_PARTS   the parts' glob (default ~/gpu-carry/smollm2.gguf.part* and shared-gpu/...)
#   WHEELS       a folder of wheels to install without dependencies (bitsandbytes, gguf)
#   ROUNDS       rounds of the SmolLM2 loop per setting (default 1)
#   OUT          where the figures go (default ./gpu-out)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
ROUNDS=${ROUNDS:-1}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1

if [ -n "${WHEELS:-}" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    pip install -q --no-deps "$WHEELS"/*.whl
fi
pip install -q --no-deps -e . 2>/dev/null || true
python - <<'EOF' | tee "$OUT/device.txt"
import torch, transformers, peft
print(torch.__version__, torch.cuda.get_device_name(), "transformers", transformers.__version__,
      "peft", peft.__version__)
try:
    import bitsandbytes
    print("bitsandbytes", bitsandbytes.__version__)
except ImportError:
    print("bitsandbytes: not installed (no 4-bit runs)")
EOF

# 1. The GGUF, joined from its parts and checked against the package's file size.
GGUF="$OUT/SmolLM2-135M-Instruct.Q4_1.gguf"
# shellcheck disable=SC2086
cat ${GGUF_PARTS:-~/gpu-carry/smollm2.gguf.part* shared-gpu/smollm2.gguf.part*} \
    2>/dev/null > "$GGUF" || true
[ "$(stat -c %s "$GGUF")" -eq 98362432 ] || { echo "the GGUF parts are missing or torn"; exit 1; }

has_bnb=$(python -c 'import importlib.util as u; print(int(u.find_spec("bitsandbytes") is not None))')
settings=(bf16)
[ "$has_bnb" = 1 ] && settings+=(qlora)

# 2. The SmolLM2 loop: the shipped config on CUDA (transformers sampling: no vLLM here).
for setting in "${settings[@]}"; do
    extra=(--set model.dtype=bfloat16)
    [ "$setting" = qlora ] && extra+=(--set model.quantization=4bit)
    start=$(date +%s)
    codealign iterate --config configs/smollm2-135m-cpu.yaml --rounds "$ROUNDS" -q \
        --run-dir "$OUT/smollm2-$setting" --set model.name="$GGUF" --set model.device=cuda \
        --set sampling.backend=hf --set sampling.batch_size=164 "${extra[@]}"
    echo "smollm2 $setting: $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
done

# 3. One round of the tiny model with 4-bit QLoRA on CUDA (the GPU path end to end).
if [ "$has_bnb" = 1 ]; then
    start=$(date +%s)
    codealign iterate --config configs/tiny-cpu.yaml --rounds 1 -q --run-dir "$OUT/tiny-qlora" \
        --set model.device=cuda --set model.quantization=4bit --set model.dtype=bfloat16
    echo "tiny qlora: $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
fi
for report in "$OUT"/*/report.md; do
    echo "== $report"; cat "$report"
done
