#!/usr/bin/env bash
# Builds plantgate for a plant PC and proves the result runs, without docker.
#
#   cross/build.sh aarch64            # 64-bit ARM (most current industrial PCs)
#   cross/build.sh armv7              # 32-bit ARM (older boards)
#   cross/build.sh amd64              # x86_64 plant PCs
#   options:
#     --static    fully static musl build: runs on any Linux of that architecture, whatever its
#                 libc (glibc builds need glibc >= 2.34: Debian 12 / Ubuntu 22.04 and newer)
#     --deb       also the .deb (cargo-deb); with --static, *-static.deb, which depends on no libc
#     --tar       also a plain .tar.gz (binary, systemd unit, example configs, README, LICENSE)
#     --no-smoke  skip the smoke run
#
# Installs what it needs (apt, rustup target, cargo-deb; for --static, cargo-zigbuild and zig
# from PyPI into target/cross-venv), is idempotent, and ends with a smoke run of the binary (under
# qemu-user for ARM): `plantgate --version` and `plantgate demo --for 5`.
# Output: target/<triple>/release/plantgate, target/debian/*.deb, target/dist/*.tar.gz.
#
# --static links with cargo-zigbuild (zig brings musl, its crt objects and libunwind for every
# target, so no musl cross compiler is needed). rustup has std for aarch64 and x86_64 musl; for
# armv7 musl it has none (404), so std is built from rust-src (-Zbuild-std, which stable rustc
# allows with RUSTC_BOOTSTRAP=1). The musl builds allocate with mimalloc (src/lib.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:?usage: cross/build.sh aarch64|armv7|amd64 [--static] [--deb] [--tar] [--no-smoke]}
shift
static=0
deb=0
tar=0
smoke=1
for a in "$@"; do
  case $a in
    --static) static=1 ;;
    --deb) deb=1 ;;
    --tar) tar=1 ;;
    --no-smoke) smoke=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

build_std=0
if [ $static = 1 ]; then
  case $arch in
    aarch64) triple=aarch64-unknown-linux-musl; pkgs=(qemu-user); run=(qemu-aarch64) ;;
    armv7)   triple=armv7-unknown-linux-musleabihf; pkgs=(qemu-user); run=(qemu-arm) ;;
    amd64|x86_64) arch=amd64; triple=x86_64-unknown-linux-musl; pkgs=(); run=() ;;
    *) echo "unknown architecture $arch (aarch64, armv7 or amd64)" >&2; exit 2 ;;
  esac
  pkgs+=(file)
  command -v python3 >/dev/null || pkgs+=(python3 python3-venv)
else
  case $arch in
    aarch64) triple=aarch64-unknown-linux-gnu; pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
             run=(qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib) ;;
    armv7)   triple=armv7-unknown-linux-gnueabihf; pkgs=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user)
             run=(qemu-arm -L /usr/arm-linux-gnueabihf -E LD_LIBRARY_PATH=/usr/arm-linux-gnueabihf/lib) ;;
    amd64|x86_64) arch=amd64; triple=x86_64-unknown-linux-gnu; pkgs=(); run=() ;;
    *) echo "unknown architecture $arch (aarch64, armv7 or amd64)" >&2; exit 2 ;;
  esac
fi

missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! rustup target list --installed | grep -qx "$triple"; then
  if ! rustup target add "$triple" 2>/dev/null; then
    [ $static = 1 ] && [ "$arch" = armv7 ] || { echo "rustup has no std for $triple" >&2; exit 1; }
    echo "rustup has no std for $triple: building std from rust-src"
    build_std=1
    rustup component add rust-src
  fi
fi

build=(cargo build)
if [ $static = 1 ]; then
  venv=target/cross-venv
  if [ ! -x $venv/bin/cargo-zigbuild ]; then
    python3 -m venv $venv 2>/dev/null || {
      apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf $venv; python3 -m venv $venv; }
    $venv/bin/pip install -q 'ziglang==0.17.*' 'cargo-zigbuild==0.24.*'
  fi
  export PATH=$PWD/$venv/bin:$PATH
  build=(cargo zigbuild)
fi
extra=()
if [ $build_std = 1 ]; then
  export RUSTC_BOOTSTRAP=1
  extra=(-Zbuild-std=std,panic_abort)
fi

start=$(date +%s)
"${build[@]}" --release --locked --target "$triple" "${extra[@]}"
bin=target/$triple/release/plantgate
echo "built $bin in $(( $(date +%s) - start )) s: $(stat -c %s "$bin") bytes, stripped"
file "$bin" 2>/dev/null || true
if [ $static = 1 ] && command -v file >/dev/null; then
  file "$bin" | grep -q 'statically linked' || { echo "$bin is not statically linked" >&2; exit 1; }
fi

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

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
if [ $deb = 1 ]; then
  command -v cargo-deb >/dev/null || cargo install --locked cargo-deb --version '^3'
  mkdir -p target/debian
  if [ $static = 1 ]; then
    debarch=$(case $arch in aarch64) echo arm64 ;; armv7) echo armhf ;; amd64) echo amd64 ;; esac)
    # [package.metadata.deb.variants.static]: the same package, without the libc dependency.
    cargo deb --no-build --target "$triple" --variant static \
      --output "target/debian/plantgate_${version}-1_${debarch}-static.deb"
  else
    cargo deb --no-build --target "$triple" --output target/debian/
  fi
  ls -l target/debian/*.deb
fi

if [ $tar = 1 ]; then
  kind=$([ $static = 1 ] && echo static || echo glibc)
  name=plantgate-$version-$arch-$kind
  stage=target/dist/$name
  rm -rf "$stage"
  install -D -m 0755 "$bin" "$stage/plantgate"
  install -D -m 0644 systemd/plantgate.service "$stage/plantgate.service"
  install -D -m 0644 -t "$stage/examples" config/plantgate.example.toml config/gd16-rs485.toml config/modbus-tcp.toml config/tank-farm.toml
  install -m 0644 README.md LICENSE "$stage/"
  tar -C target/dist --owner=0 --group=0 --numeric-owner -czf "target/dist/$name.tar.gz" "$name"
  rm -rf "$stage"
  ls -l "target/dist/$name.tar.gz"
fi
