#!/usr/bin/env bash
# Builds plantgate for a plant PC and proves the result runs, without docker.
#
#   cross/build.sh aarch64            # 64-bit ARM (most current industrial PCs)
#   cross/build.sh armv7              # 32-bit ARM (older boards)
#   cross/build.sh amd64              # x86_64 plant PCs
#   options: --deb (also build the .deb with cargo-deb), --no-smoke
#
# Installs what it needs (apt, rustup target, cargo-deb), is idempotent, and ends with a smoke
# run of the binary (under qemu-user for ARM): `plantgate --version` and `plantgate demo --for 5`.
# Output: target/<triple>/release/plantgate and, with --deb, target/debian/plantgate_*.deb.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:?usage: cross/build.sh aarch64|armv7|amd64 [--deb] [--no-smoke]}
shift
deb=0
smoke=1
for a in "$@"; do
  case $a in
    --deb) deb=1 ;;
    --no-smoke) smoke=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

case $arch in
  aarch64) triple=aarch64-unknown-linux-gnu; pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
           run=(qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib) ;;
  armv7)   triple=armv7-unknown-linux-gnueabihf; pkgs=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user)
           run=(qemu-arm -L /usr/arm-linux-gnueabihf -E LD_LIBRARY_PATH=/usr/arm-linux-gnueabihf/lib) ;;
  amd64)   triple=x86_64-unknown-linux-gnu; pkgs=(); run=() ;;
  *) echo "unknown architecture $arch (aarch64, armv7 or amd64)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"

start=$(date +%s)
cargo build --release --locked --target "$triple"
bin=target/$triple/release/plantgate
echo "built $bin in $(( $(date +%s) - start )) s: $(stat -c %s "$bin") bytes, stripped"

if [ $smoke = 1 ]; then
  timeout 60 "${run[@]}" "$bin" --version
  out=$(mktemp)
  if ! timeout 180 "${run[@]}" "$bin" demo --for 5 >"$out" 2>&1; then
    cat "$out"; echo "smoke run failed" >&2; exit 1
  fi
  grep -q '%LEL' "$out" && grep -q 'the platform received' "$out" || { cat "$out"; echo "smoke run printed no readings" >&2; exit 1; }
  grep 'the platform received' "$out"
  rm -f "$out"
  echo "smoke run on $arch: ok"
fi

if [ $deb = 1 ]; then
  command -v cargo-deb >/dev/null || cargo install --locked cargo-deb --version '^3'
  cargo deb --no-build --target "$triple" --output target/debian/
  ls -l target/debian/*.deb
fi
