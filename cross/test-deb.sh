#!/usr/bin/env bash
# Installs an amd64 .deb on this machine (root) and checks it the way a technician would meet
# it; purges it again at the end. Run after `cross/build.sh amd64 [--static] --deb`:
#   cross/test-deb.sh [target/debian/plantgate_..._amd64[-static].deb]   # default: the newest
# A *-static.deb must depend on no libc and carry a statically linked binary; the glibc one
# must depend on libc6 (>= 2.34).
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:-$(ls -t target/debian/plantgate_*_amd64*.deb | head -1)}
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== contents of $deb"
dpkg-deb -c "$deb" | awk '{print $1, $2, $6}'
for f in ./usr/bin/plantgate ./lib/systemd/system/plantgate.service ./etc/plantgate/plantgate.toml \
         ./usr/share/doc/plantgate/README.md ./usr/share/doc/plantgate/examples/gd16-rs485.toml; do
  dpkg-deb -c "$deb" | awk '{print $6}' | grep -qx "$f" || fail "$f is not in the package"
done
depends=$(dpkg-deb -f "$deb" Depends)
case $deb in
  *-static.deb)
    ! grep -q libc <<<"$depends" || fail "a static package depends on a libc: $depends"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/plantgate > /tmp/plantgate-deb-bin
    file /tmp/plantgate-deb-bin | grep -q 'statically linked' || fail "the binary is not static: $(file /tmp/plantgate-deb-bin)"
    rm -f /tmp/plantgate-deb-bin ;;
  *) grep -q 'libc6 (>= 2.34)' <<<"$depends" || fail "Depends: $depends" ;;
esac
echo "Depends: $depends"
dpkg-deb -e "$deb" /tmp/plantgate-deb-control
grep -qx /etc/plantgate/plantgate.toml /tmp/plantgate-deb-control/conffiles || fail "the config is not a conffile"

echo "== dpkg -i"
dpkg -i "$deb" | tee /tmp/plantgate-dpkg.log
grep -q "is installed but not started" /tmp/plantgate-dpkg.log || fail "no word about the unedited configuration"
id plantgate
id -nG plantgate | grep -qw dialout || fail "plantgate is not in dialout"
[ "$(stat -c '%U:%G %a' /var/lib/plantgate)" = "plantgate:plantgate 750" ] || fail "/var/lib/plantgate: $(stat -c '%U:%G %a' /var/lib/plantgate)"
[ "$(stat -c '%U:%G %a' /etc/plantgate/plantgate.toml)" = "root:plantgate 640" ] || fail "config mode: $(stat -c '%U:%G %a' /etc/plantgate/plantgate.toml)"

echo "== the unit"
systemd-analyze verify /lib/systemd/system/plantgate.service
score_line=$(systemd-analyze security --offline=true /lib/systemd/system/plantgate.service | tail -1)
echo "$score_line"
# "→ Overall exposure level for plantgate.service: 1.3 OK": the README promises under 2.0.
score=$(echo "$score_line" | grep -oE '[0-9]+\.[0-9]+' | head -1)
[ -n "$score" ] || fail "no exposure score in: $score_line"
awk -v s="$score" 'BEGIN { exit !(s < 2.0) }' || fail "systemd-analyze security exposure $score is not below 2.0"

echo "== check-config as the service user"
runuser -u plantgate -- plantgate check-config --config /etc/plantgate/plantgate.toml
if runuser -u plantgate -- plantgate check-config --strict --config /etc/plantgate/plantgate.toml >/dev/null 2>&1; then
  fail "--strict accepted a configuration without certificates"
fi

echo "== run as the service user"
# The packaged configuration names a converter on the plant LAN and the platform's broker; this
# machine may send nothing off itself, so a copy points the converter at loopback and leaves the
# uplink out. Everything else (user, spool directory, serial group, parsing) is the package's.
sed -e 's/192\.168\.10\.50:502/127.0.0.1:1502/' -e '/^\[upstream\]/,$d' /etc/plantgate/plantgate.toml > /tmp/plantgate-local.toml
chmod 0644 /tmp/plantgate-local.toml
set +e
timeout 6 runuser -u plantgate -- plantgate run --config /tmp/plantgate-local.toml 2>/tmp/plantgate-run.log
code=$?
set -e
[ $code = 124 ] || { cat /tmp/plantgate-run.log; fail "plantgate exited with $code instead of running"; }
grep -q "bus polling" /tmp/plantgate-run.log || { cat /tmp/plantgate-run.log; fail "no bus was polled"; }
[ "$(stat -c %U /var/lib/plantgate/spool.redb)" = plantgate ] || fail "the spool is not the service user's"
echo "ran for 6 s as plantgate; spool: $(stat -c '%s bytes, %U:%G %a' /var/lib/plantgate/spool.redb)"

echo "== purge"
dpkg --purge plantgate >/dev/null
! id plantgate 2>/dev/null || fail "the user survived the purge"
echo "package test: ok"
