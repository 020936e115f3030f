#!/usr/bin/env bash
# GPU check for `depthscope validate --device cuda` (CI has no GPU: run this by hand on a machine with one).
#
#   bash bench/gpu_validate.sh [OUTDIR]        # PYTHON=/path/to/venv/bin/python to pick the interpreter
#
# Times examples/attention.py and examples/gpt.py on CUDA (synchronised torch.utils.benchmark timings), writes
# JSON, tables and plots to OUTDIR (default gpu_validate_out/), prints R^2, slopes and verdicts, and the h100
# predictions for gpt. Needs a CUDA build of torch and matplotlib (pip install -e '.[plot,validate]').
# About two to five minutes on an H100; each sweep stops cleanly at its --max-seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_validate_out}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"

"$PY" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_validate: no CUDA device (torch {torch.__version__}, CUDA {torch.version.cuda}); this check needs a GPU")
print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; CUDA {torch.version.cuda}")
EOF

# The refusal path must still be exit 2 on a machine without CUDA; here CUDA is present, so run the real path.
"$PY" -m depthscope validate examples/attention.py --sizes n=64,128,256,512,1024,2048,4096,8192 --at b=8 \
    --device cuda --repeats 7 --max-seconds 150 --format json --plot "$OUT/attention_cuda.png" \
    > "$OUT/attention_cuda.json"
"$PY" -m depthscope validate examples/gpt.py --sizes n=64,128,256,512,1024 --at b=8 \
    --device cuda --repeats 7 --max-seconds 120 --format json --plot "$OUT/gpt_cuda.png" \
    > "$OUT/gpt_cuda.json"
"$PY" -m depthscope predict examples/gpt.py --at n=1024 --at b=8 --device-profile h100 --plot "$OUT/gpt_roofline_h100.png" \
    > "$OUT/gpt_predict_h100.txt"
"$PY" -m depthscope predict examples/attention.py --at n=4096 --at b=8 --device-profile h100 --format json \
    > "$OUT/attention_predict_h100.json"

"$PY" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
for name in ("attention_cuda", "gpt_cuda"):
    r = json.load(open(os.path.join(out, name + ".json")))
    fit, s = r["fit"] or {}, r["slopes"]
    print(f"\n== {r['model']} on {r['device_name']} (profile {r['profile']['name']}), {r['symbol']} = {r['sizes']}")
    print("median s:", ", ".join(f"{m:.3g}" for m in r["median_s"]))
    print("IQR s:   ", ", ".join(f"{m:.2g}" for m in r["iqr_s"]))
    if fit:
        print(f"fit: alpha={fit['alpha_s_per_op']:.3g} s/op beta={fit['beta_s_per_level']:.3g} s/level "
              f"gamma={fit['gamma_s']:.3g} s; R^2={fit['r2']:.4f}, log R^2={fit['r2_log']:.4f}")
    print(f"slope measured {s['measured']}, predicted {s['predicted']}, work {s['work']}")
    print("verdict:", r["verdict"]["text"])
    roof = r["predicted"].get("roofline_s") or []
    if roof and all(roof):  # the roofline's one-stream prediction T against the clock, no calibration
        print("roofline T / measured:", ", ".join(f"{s}: {t / m:.2f}" for s, t, m in zip(r["sizes"], roof, r["median_s"])))
    if r.get("fit_bytes"):
        fb, fw = r["fit_bytes"], r["fit_work"]
        print(f"fit W,Q,D,K: R^2={fb['r2']:.4f}, explained by {fb['explained_by']}; W only: R^2={fw['r2']:.4f}")
    if r["stopped_early"]:
        print("stopped early:", r["stop_reason"])
print(f"\nplots and JSON in {out}/")
EOF
