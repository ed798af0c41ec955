#!/usr/bin/env bash
# Runs `npm run bench` on the WebGPU backend of a machine that has a GPU but no Node.js, no npm and
# no network (this workplace's device machines, reached through its `run` tool).
#
#   scripts/gpu-bench.sh build    # here: .gpu/ = bench bundle + Dawn addon + wasm files + node.xz
#   scripts/gpu-bench.sh local    # here: check the bundle (wasm; software WebGPU if a Vulkan ICD is given)
#   scripts/gpu-bench.sh device   # there: unpack Vulkan loader + node, run the bench, write $OUT/*
#
# Before `device`, once, in the repo root (the loader debs travel in .gl/, see the device README):
#   echo /.gl/ >>.git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
# and call the tool as: run(command: 'bash scripts/gpu-bench.sh device', carry: ['.gpu', '.gl'], timeout_s: 420).
# .gpu/ and .gl/ are listed in .git/info/exclude (never committed).
#
# What comes back: latest.json (bench/results/latest.json with the webgpu runs merged in by the
# bench's --merge), log.txt. To take it in:
#   cp <files_at>/latest.json bench/results/latest.json
#   npm run bench -- --backends none --merge   # the bench's own merge again: measures nothing, keeps
#                                              # every run, and puts back this machine's `machine` block
#                                              # (where the wasm/cpu runs were taken) and torch.json.
#
# The bundle: esbuild inlines bench/run.ts and every JS dependency (workspace packages from source,
# condition @posttrain/source) into one ESM file. Two things stay outside it: the native `webgpu`
# package (Dawn), loaded by backend.ts through a dynamic import of a computed name, so Node resolves
# it from .gpu/node_modules/webgpu; and tfjs-backend-wasm's .wasm files, which its Emscripten glue
# reads from `__dirname` (the banner defines __dirname as the bundle's folder).
set -euo pipefail
cd "$(dirname "$0")/.."
G=.gpu

build() {
  # Everything but node.xz, which takes minutes to compress (delete it to redo it).
  mkdir -p "$G" && find "$G" -mindepth 1 -maxdepth 1 ! -name node.xz -exec rm -rf {} +
  mkdir -p "$G/node_modules/webgpu/dist/linux-x64"
  local banner="import { createRequire as __gpuCreateRequire } from 'node:module'; import { fileURLToPath as __gpuPath } from 'node:url'; import { dirname as __gpuDirname } from 'node:path'; const require = __gpuCreateRequire(import.meta.url); const __filename = __gpuPath(import.meta.url); const __dirname = __gpuDirname(__filename);"
  npx esbuild bench/run.ts --bundle --platform=node --format=esm --target=node20 \
    --conditions=@posttrain/source --external:webgpu --ignore-annotations --log-level=warning \
    "--banner:js=$banner" --outfile="$G/bench.mjs"
  cp node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm "$G/"
  cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$G/node_modules/webgpu/"
  cp node_modules/webgpu/dist/linux-x64/dawn.node "$G/node_modules/webgpu/dist/linux-x64/"
  # webgpu's own dependencies (@webgpu/types, debug) are not imported by index.js at run time.
  [ -f "$G/node.xz" ] || xz -9 -T2 -c "$(command -v node)" >"$G/node.xz"
  du -sh "$G"/*; du -sh "$G"
}

local_check() {
  local out=/tmp/gpu-bench-local
  mkdir -p "$out"
  node "$G/bench.mjs" --backends wasm --suites decode --seconds 3 --out "$out/wasm.json"
  if [ -n "${VK_ICD_FILENAMES:-}" ]; then
    node "$G/bench.mjs" --backends webgpu --webgpu-software --suites train --shapes tiny --seconds 3 --out "$out/webgpu-sw.json"
  fi
}

device() {
  : "${OUT:?OUT is the folder the run tool brings back}"
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  ldconfig -p | grep -i libvulkan || true
  # Without this the loader may find no NVIDIA ICD (its JSON lives under the driver's mount).
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
  ls -l /dev/nvidia* 2>&1 | head -5 || true; cat "$icd" 2>&1 || true
  # xz-utils may be missing there; Python's lzma reads the same file.
  xz -dc "$G/node.xz" >/tmp/node 2>/dev/null ||
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$G/node.xz" /tmp/node
  chmod +x /tmp/node
  /tmp/node --version
  nvidia-smi -L || echo "nvidia-smi: exit $?"
  # What Dawn sees, before the bench asks for an adapter (powerPreference high-performance).
  cat >/tmp/probe.mjs <<PROBE
import { create } from '$PWD/$G/node_modules/webgpu/index.js';
const gpu = create([]);
for (const powerPreference of ['high-performance', 'low-power']) {
  const a = await gpu.requestAdapter({ powerPreference });
  const info = a ? Object.fromEntries(['vendor', 'architecture', 'device', 'description', 'isFallbackAdapter'].map((k) => [k, a.info?.[k]])) : null;
  console.log(powerPreference, JSON.stringify(info && { ...info, f16: a.features.has('shader-f16'), maxBufferSize: a.limits.maxBufferSize, maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize }));
}
PROBE
  /tmp/node /tmp/probe.mjs || echo "probe: exit $?"
  local seconds="${SECONDS_PER_RUN:-8}"
  # --merge into a copy of bench/results/latest.json keeps the runs measured elsewhere (the torch.json
  # beside it is the reference block the bench adds back). Each suite is bounded, so a failure or a
  # slow suite loses nothing else.
  cp bench/results/latest.json bench/results/torch.json "$OUT/"
  timeout 150 /tmp/node "$G/bench.mjs" --backends webgpu --suites train --shapes tiny,vocab32k \
    --seconds "$seconds" --merge --out "$OUT/latest.json" || echo "train: exit $?"
  timeout 120 /tmp/node "$G/bench.mjs" --backends webgpu --suites forward,decode --seconds "$seconds" \
    --merge --out "$OUT/latest.json" || echo "forward,decode: exit $?"
  timeout 120 /tmp/node "$G/bench.mjs" --backends webgpu --suites dpo --seconds "$seconds" \
    --merge --out "$OUT/latest.json" || echo "dpo: exit $?"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv || true
}

case "${1:-}" in
  build) build ;;
  local) local_check ;;
  device) set -o pipefail; device 2>&1 | tee "$OUT/log.txt" ;;
  *) echo "usage: $0 build|local|device" >&2; exit 2 ;;
esac
