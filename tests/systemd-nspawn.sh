#!/usr/bin/env bash
# The real-systemd test (not part of the product): build the .deb, boot Debian
# 12 with its systemd as PID 1 in systemd-nspawn, install the package the way
# the README says, and check what only a real systemd can show. Every check
# prints "ok:" or "MISS:"; any miss makes the exit status 1.
#
#   sudo tests/systemd-nspawn.sh              # from anywhere in the checkout
#   DEB=path/to/orderwatch_x_amd64.deb ...    # test a .deb built elsewhere
#   sudo tests/systemd-nspawn.sh --rootfs-only # only build the cached rootfs
#                                              # (.ci/run, beside the tests)
#
# Needs root, systemd-nspawn (systemd-container), debootstrap, cargo-deb and a
# Debian mirror (the one in the host's apt sources). The container shares the
# host's network but not its files: the Debian root filesystem is cached in
# target/nspawn/rootfs (about 1.5 minutes to build once) and booted with
# --volatile=overlay, so every run starts from the same clean system. It has
# no CA certificates on purpose: plain-http loopback must work without them.
# A missing tool prints "skipped: ..." and exits 0, unless
# ORDERWATCH_REQUIRE_NSPAWN=1 (set by .ci/run once it installed them).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
START=$(date +%s)
CACHE=$PWD/target/nspawn
ROOTFS=$CACHE/rootfs
# Change this when the debootstrap line changes, so caches are rebuilt.
RECIPE="bookworm minbase systemd,systemd-sysv,dbus,procps 1"
MACHINE=orderwatch-test-$$
MISSES=0

skip() {
    if [ -n "${ORDERWATCH_REQUIRE_NSPAWN:-}" ]; then
        echo "FAIL: tests/systemd-nspawn.sh: $* (ORDERWATCH_REQUIRE_NSPAWN is set)"
        exit 1
    fi
    echo "skipped: tests/systemd-nspawn.sh: $*"
    exit 0
}
ok() { echo "ok:   $*"; }
miss() { echo "MISS: $*"; MISSES=$((MISSES + 1)); }
# check "what should hold" command...: ok or MISS by the command's status.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else miss "$what"; fi
}
step() { echo "=== $* (+$(($(date +%s) - START))s)"; }
# wait_for SECONDS command...: polls every half second.
wait_for() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.5
    done
}

[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn, debootstrap)"
for tool in systemd-nspawn debootstrap nsenter cargo; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
# The Debian root filesystem, built once into $ROOTFS and kept for later runs.
build_rootfs() {
    if [ "$(cat "$CACHE/rootfs.recipe" 2>/dev/null)" = "$RECIPE" ] && [ -x "$ROOTFS/lib/systemd/systemd" ]; then
        return
    fi
    step "debootstrap ($RECIPE)"
    local mirror
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    mirror=${mirror:-http://deb.debian.org/debian}
    mkdir -p "$CACHE"
    rm -rf "$ROOTFS" "$ROOTFS.tmp" "$CACHE/rootfs.recipe"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps \
        bookworm "$ROOTFS.tmp" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log"; echo "FAIL: debootstrap from $mirror"; exit 1; }
    mv "$ROOTFS.tmp" "$ROOTFS"
    echo "$RECIPE" >"$CACHE/rootfs.recipe"
}

if [ "${1:-}" = --rootfs-only ]; then
    build_rootfs
    echo "rootfs ready: $ROOTFS (+$(($(date +%s) - START))s)"
    exit 0
fi

if [ -z "${DEB:-}" ]; then
    cargo deb --version >/dev/null 2>&1 || skip "cargo-deb is not installed (cargo install cargo-deb)"
fi

if [ -z "${DEB:-}" ]; then
    step "cargo deb"
    # Only this package's .deb, so a stale one cannot be picked up.
    rm -f target/debian/orderwatch_*.deb
    nice -n 10 cargo deb --fast >"$CACHE.cargo-deb.log" 2>&1 \
        || { cat "$CACHE.cargo-deb.log"; echo "FAIL: cargo deb"; exit 1; }
    DEB=$(ls target/debian/orderwatch_*.deb)
fi
DEB=$(realpath "$DEB")
echo "package: $DEB"

build_rootfs

step "boot $MACHINE"
# --register=no --keep-unit: the host's PID 1 need not be systemd.
systemd-nspawn -D "$ROOTFS" -M "$MACHINE" --volatile=overlay --register=no --keep-unit \
    --bind-ro="$(dirname "$DEB"):/mnt/deb" -b >"$CACHE/nspawn.log" 2>&1 </dev/null &
NSPAWN=$!
cleanup() {
    kill -TERM "$NSPAWN" 2>/dev/null # an orderly poweroff of the container
    for _ in $(seq 40); do kill -0 "$NSPAWN" 2>/dev/null || return; sleep 0.5; done
    kill -KILL "$NSPAWN" 2>/dev/null
}
trap cleanup EXIT
CPID=
for _ in $(seq 100); do
    CPID=$(pgrep -P "$NSPAWN" | head -1)
    [ -n "$CPID" ] && break
    sleep 0.2
done
[ -n "$CPID" ] || { cat "$CACHE/nspawn.log"; echo "FAIL: the container did not start"; exit 1; }
E() { nsenter -t "$CPID" -a "$@"; }
TE() { local t=$1; shift; timeout "$t" nsenter -t "$CPID" -a "$@"; }
booted() { case "$(TE 10 systemctl is-system-running 2>/dev/null)" in running | degraded) return 0 ;; esac; return 1; }
wait_for 60 booted || { cat "$CACHE/nspawn.log"; echo "FAIL: systemd in the container did not finish booting"; exit 1; }
echo "systemd $(E systemctl --version | awk 'NR == 1 {print $2}') is PID 1 of $MACHINE"
show() { E systemctl show orderwatch -p "$1" --value; }
installed_files_ok() {
    local f
    for f in /usr/bin/orderwatch /lib/systemd/system/orderwatch.service /etc/orderwatch/orderwatch.toml \
        /usr/share/man/man1/orderwatch.1 /usr/share/bash-completion/completions/orderwatch \
        /usr/share/zsh/vendor-completions/_orderwatch /usr/share/fish/vendor_completions.d/orderwatch.fish \
        /usr/share/doc/orderwatch/README.md /usr/share/doc/orderwatch/copyright; do
        E dpkg -L orderwatch | grep -qx "$f" && E test -s "$f" || { echo "  missing: $f"; return 1; }
    done
}
reloads() { E journalctl _PID=1 -o cat --no-pager | grep -c '^Reloading'; }

step "install: apt install ./$(basename "$DEB")"
before=$(reloads)
# --no-install-recommends keeps ca-certificates out (and the mirror unused):
# the package must work without a CA store for plain http to loopback.
check "apt install succeeds" TE 120 env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "/mnt/deb/$(basename "$DEB")" >"$CACHE/apt.log" 2>&1
check "binary, unit, conffile, man page, completions, README and copyright installed" installed_files_ok
check "/etc/orderwatch/orderwatch.toml is a conffile" \
    sh -c "nsenter -t $CPID -a dpkg-query -W -f='\${Conffiles}' orderwatch | grep -q ' /etc/orderwatch/orderwatch.toml '"
check "the install ran daemon-reload" test "$(reloads)" -gt "$before"
check "the install did not start or enable the service" \
    test "$(show ActiveState)/$(E systemctl is-enabled orderwatch)" = inactive/disabled
check "man page orderwatch(1) renders from the clap definitions" \
    E grep -q '^\.SS "orderwatch completions"' /usr/share/man/man1/orderwatch.1
check "bash completion loads" E bash -c '. /usr/share/bash-completion/completions/orderwatch && complete -p orderwatch >/dev/null'
check "orderwatch completions fish prints a fish script" \
    sh -c "nsenter -t $CPID -a orderwatch completions fish | grep -q 'complete -c orderwatch'"

step "the stock config, unedited: a config error leaves the unit failed, no restart loop"
E sh -c 'umask 077; printf %s sim-key > /etc/orderwatch/digicert-api-key'
TE 60 systemctl start orderwatch >/dev/null 2>&1
check "systemctl start fails" test "$(show ActiveState)" != active
sleep 7 # RestartSec=5s: a restart would have happened by now
state="$(show ActiveState) Result=$(show Result) status=$(show ExecMainStatus) NRestarts=$(show NRestarts)"
check "failed with exit status 2 and not restarted ($state)" \
    test "$state" = "failed Result=exit-code status=2 NRestarts=0"
check "systemctl status names the reason (OPS_HOOK_SECRET)" \
    sh -c "nsenter -t $CPID -a systemctl status orderwatch --no-pager -n 20 | grep -q OPS_HOOK_SECRET"
E systemctl reset-failed orderwatch

step "a test config: the simulator, file sinks in the log and state directories, WatchdogSec=3s"
E systemd-run -q --unit=ow-sim -p Type=exec /usr/bin/orderwatch simulate \
    --listen 127.0.0.1:0 --api-key sim-key --rate 240 --orders 5
sim_url() { E journalctl -u ow-sim -o cat --no-pager | grep -o 'http://127.0.0.1:[0-9]*/services/v2' | head -1; }
has_sim_url() { [ -n "$(sim_url)" ]; }
wait_for 20 has_sim_url
URL=$(sim_url)
[ -n "$URL" ] || { echo "FAIL: the simulator did not start"; E journalctl -u ow-sim --no-pager | tail; exit 1; }
cat >"$CACHE/test.toml" <<EOF
[digicert]
base_url = "$URL"

[poll]
interval = "1s"

[[sinks]]
name = "rotated"
type = "file"
path = "/var/log/orderwatch/events.jsonl"

[[sinks]]
name = "archive"
type = "file"
path = "/var/lib/orderwatch/events.jsonl"
EOF
E sh -c 'cat > /etc/orderwatch/orderwatch.toml' <"$CACHE/test.toml"
E mkdir -p /etc/systemd/system/orderwatch.service.d
# A short watchdog; and SIGKILL 2 s after the watchdog's SIGABRT instead of
# TimeoutStopSec=30s, since a SIGSTOPped process cannot act on SIGABRT.
printf '[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\n' | E sh -c 'cat > /etc/systemd/system/orderwatch.service.d/test.conf'
E systemctl daemon-reload

step "systemctl enable --now orderwatch"
t=$(date +%s%N)
check "enable --now returns once READY=1 arrived" TE 60 systemctl enable --now orderwatch -q
echo "  READY after $((($(date +%s%N) - t) / 1000000)) ms"
check "active (running)" test "$(show ActiveState)/$(show SubState)" = active/running
polling() { show StatusText | grep -q '^polling every 1s'; }
wait_for 20 polling
check "STATUS= shows what it does: \"$(show StatusText)\"" polling
PID=$(show MainPID)
proc() { E awk -v k="$1:" '$1 == k {print $2}' "/proc/$PID/status"; }
uid=$(proc Uid)
check "runs as a dynamic user (uid $uid)" test "$uid" -ge 61184 -a "$uid" -le 65519
check "no new privileges, seccomp filter, no capabilities" \
    test "$(proc NoNewPrivs) $(proc Seccomp) $(proc CapEff)" = "1 2 0000000000000000"
check "the API key arrives as a credential" E test -f /run/credentials/orderwatch.service/digicert-api-key
check "the key is used: events from the simulator reach both sinks" \
    wait_for 20 E sh -c 'test -s /var/log/orderwatch/events.jsonl && test -s /var/lib/orderwatch/events.jsonl'
# "mode uid" of a path; the dynamic user owns what the service created.
mode() { E stat -c '%a %u' "$1"; }
check "state directory 0700, the service's: $(mode /var/lib/private/orderwatch)" \
    test "$(mode /var/lib/private/orderwatch)" = "700 $uid"
check "store 0600: $(mode /var/lib/orderwatch/orderwatch.db)" test "$(mode /var/lib/orderwatch/orderwatch.db)" = "600 $uid"
check "log directory 0750: $(mode /var/log/private/orderwatch)" test "$(mode /var/log/private/orderwatch)" = "750 $uid"
check "events file not world-readable: $(mode /var/log/orderwatch/events.jsonl)" \
    sh -c "nsenter -t $CPID -a stat -c %a /var/log/orderwatch/events.jsonl | grep -q '0$'"
check "the key file stays root's: $(mode /etc/orderwatch/digicert-api-key)" \
    test "$(mode /etc/orderwatch/digicert-api-key)" = "600 0"

step "systemctl reload after a logrotate-style move"
E mv /var/log/orderwatch/events.jsonl /var/log/orderwatch/events.jsonl.1
check "reload succeeds" TE 30 systemctl reload orderwatch
check "the file sink is reopened at its path" wait_for 15 E test -s /var/log/orderwatch/events.jsonl
check "reload kept the process ($PID)" test "$(show MainPID)" = "$PID"

step "an invalid config on reload is refused; the old one keeps running"
E cp /etc/orderwatch/orderwatch.toml /root/good.toml
E sh -c 'echo "bogus_key = 1" >> /etc/orderwatch/orderwatch.toml'
TE 30 systemctl reload orderwatch
errors_name_bogus() { E journalctl -u orderwatch -p err -o cat --no-pager | grep -q bogus_key; }
check "journalctl -p err shows the refusal, naming the key" wait_for 15 errors_name_bogus
event_lines() { E sh -c 'wc -l < /var/log/orderwatch/events.jsonl'; }
lines=$(event_lines)
check "still active with the same process" test "$(show ActiveState) $(show MainPID)" = "active $PID"
more_events() { [ "$(event_lines)" -gt "$lines" ]; }
check "still delivering" wait_for 15 more_events
E cp /root/good.toml /etc/orderwatch/orderwatch.toml
TE 30 systemctl reload orderwatch

step "the journal"
check "errors at priority err: the bad start and the refused reload" \
    sh -c "nsenter -t $CPID -a journalctl -u orderwatch -p err -o cat --no-pager | grep -q OPS_HOOK_SECRET"
check "routine lines at priority info, not err" \
    sh -c "nsenter -t $CPID -a journalctl -u orderwatch -p info..info -o cat --no-pager | grep -q 'transition'"
check "no line carries an escape sequence" \
    sh -c "! nsenter -t $CPID -a journalctl -u orderwatch -o cat --no-pager | grep -q \$'\\x1b'"
check "no line carries a second timestamp" \
    sh -c "! nsenter -t $CPID -a journalctl -u orderwatch _COMM=orderwatch -o cat --no-pager | grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T'"

step "systemctl stop"
t=$(date +%s%N)
TE 60 systemctl stop orderwatch
ms=$((($(date +%s%N) - t) / 1000000))
check "stopped cleanly in ${ms} ms: Result=$(show Result), exit $(show ExecMainStatus)" \
    test "$(show Result) $(show ExecMainStatus)" = "success 0"

step "SIGKILL: restarted (Restart=on-failure)"
TE 60 systemctl start orderwatch
PID=$(show MainPID)
E kill -KILL "$PID"
restarted() { local p; p=$(show MainPID); [ "$p" != 0 ] && [ "$p" != "$PID" ] && [ "$(show ActiveState)" = active ]; }
wait_for 15 restarted
check "a new process within 15 s (NRestarts=$(show NRestarts))" restarted

step "SIGSTOP: the watchdog (WatchdogSec=3s) kills and restarts it"
PID=$(show MainPID)
E kill -STOP "$PID"
check "a new process within 20 s" wait_for 20 restarted
check "systemd logged the watchdog timeout" \
    sh -c "nsenter -t $CPID -a journalctl -u orderwatch -o cat --no-pager | grep -q 'Watchdog timeout'"

step "systemd-analyze security"
exposure=$(E systemd-analyze security orderwatch --no-pager | sed -n 's/.*Overall exposure level for orderwatch.service: \([0-9.]*\).*/\1/p')
check "exposure $exposure <= 1.5" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 1.5) }'

step "apt purge orderwatch"
check "purge succeeds" TE 120 env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q orderwatch >>"$CACHE/apt.log" 2>&1
check "the service is stopped" test "$(E systemctl is-active orderwatch)" != active
gone() { local f; for f; do E test -e "$f" -o -L "$f" && { echo "  still there: $f"; return 1; }; done; return 0; }
kept() { local f; for f; do E test -e "$f" || { echo "  removed: $f"; return 1; }; done; return 0; }
check "the package's files, its conffile, the store and the enablement are gone" gone \
    /usr/bin/orderwatch /lib/systemd/system/orderwatch.service /etc/orderwatch/orderwatch.toml \
    /var/lib/private/orderwatch/orderwatch.db /var/lib/private/orderwatch/orderwatch.db-wal \
    /var/lib/private/orderwatch/orderwatch.db.lock /etc/systemd/system/multi-user.target.wants/orderwatch.service
check "the operator's key, drop-in and event files are kept" kept \
    /etc/orderwatch/digicert-api-key /etc/systemd/system/orderwatch.service.d/test.conf \
    /var/lib/orderwatch/events.jsonl /var/log/orderwatch/events.jsonl /var/log/orderwatch/events.jsonl.1

echo
echo "$(($(date +%s) - START))s in all; $MISSES miss(es)"
if [ "$MISSES" -gt 0 ]; then
    echo "--- journal of orderwatch.service (last 40 lines)"
    E journalctl -u orderwatch --no-pager -o short-monotonic | tail -40
    exit 1
fi
