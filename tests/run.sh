#!/usr/bin/env bash
# The README's test command: installs what the tests drive (on Debian/Ubuntu), then runs
# `cargo test` with any arguments given, e.g.
#
#   tests/run.sh                     # everything (as root: every test can run)
#   tests/run.sh --test poll         # one test file
#   tests/run.sh -- --skip a_full_disk --skip spool_filesystem   # without the root-only tests
#
# The tests use real parts: socat (serial pty pairs), mosquitto (a real broker over mutual TLS),
# headless chromium with a CJK font (the status page), promtool (the metrics), systemd-analyze
# (the unit), and Python's cbor2 (a CBOR decoder nobody here wrote). As root this script
# installs what is missing with apt-get; as another user it says what to install and stops.
# .ci/run calls this same script. Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

root_test="tests/spool_recovery.rs: a_full_disk_evicts_readings_keeps_alarms_and_polling_goes_on
  tests/disk_trouble.rs: all three (a loop-mounted ext4 made read-only, fsfreeze, a tmpfs)"
is_root=0
[ "$(id -u)" = 0 ] && is_root=1

# apt package → is it there? (commands where they name it, else dpkg)
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have socat || need+=(socat)
{ have mosquitto || [ -x /usr/sbin/mosquitto ]; } || need+=(mosquitto)
have chromium || need+=(chromium)
have promtool || need+=(prometheus)
dpkg-query -W -f='${Status}' fonts-wqy-microhei 2>/dev/null | grep -q 'ok installed' || need+=(fonts-wqy-microhei)
have systemd-analyze || need+=(systemd)
have cc || need+=(gcc)
have mkfs.ext4 || need+=(e2fsprogs)
{ have fsfreeze && have losetup; } || need+=(util-linux)

# cbor2 for the python3 the tests will call. Debian's python3-cbor2 when that python3 is the
# system one; a python3 of the user's own (pyenv, a venv) gets it from pip, never the system.
py=$(command -v python3 || true)
cbor=none
if [ -z "$py" ]; then
  need+=(python3 python3-cbor2)
elif ! python3 -c 'import cbor2' 2>/dev/null; then
  if [ "$(readlink -f "$py")" = "$(readlink -f /usr/bin/python3 2>/dev/null || echo none)" ]; then
    need+=(python3-cbor2)
  else
    cbor=pip
  fi
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ $is_root = 1 ] && have apt-get; then
    echo "tests/run.sh: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "tests/run.sh: the tests need packages that are not installed. Install them, then run again:"
    echo "  sudo apt-get install ${need[*]}"
    exit 1
  fi
fi
if [ $cbor = pip ]; then
  echo "tests/run.sh: installing cbor2 for $py (not the system Python)"
  python3 -m pip install -q cbor2
fi
python3 -c 'import cbor2' || { echo "tests/run.sh: python3 still cannot import cbor2" >&2; exit 1; }

if [ $is_root = 0 ]; then
  cat <<MSG
tests/run.sh: not root. These tests need root, to mount filesystems (a full, a read-only and a
frozen disk under the spool):
  $root_test
They will fail here. Run the suite as root, or leave them out:
  tests/run.sh -- --skip a_full_disk --skip spool_filesystem
MSG
fi

echo "tests/run.sh: cargo test $*"
exec cargo test "$@"
