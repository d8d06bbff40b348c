#!/usr/bin/env bash
# packaging/test-deb.sh: build the Debian package and prove it works as installed.
#
#   sudo packaging/test-deb.sh
#
# 1. `cargo deb` builds target/debian/steelcutd_<version>-1_amd64.deb (and a -2 revision of
#    the same build, for the upgrade test).
# 2. dpkg-deb: file list, owners and modes, conffiles, Depends, maintainer scripts.
# 3. lintian: no error and no warning that is not overridden in packaging/lintian-overrides.
# 4. systemd-analyze: the unit's offline security exposure is at most 1.5.
# 5. A throwaway Debian 12 chroot (debootstrap from the mirror this machine's apt uses; the
#    pristine root is cached under target/deb-test/ so reruns skip debootstrap): install,
#    check the user, modes, the enabled-unit symlink and `systemd-analyze verify`; start
#    steelcutd exactly as the unit's ExecStart does, as user steelcut, in a private network
#    namespace; add a client with the CLI, get a token with curl, read the resource;
#    stop it with SIGTERM; upgrade to -2 over an edited conffile (--force-confold) and check
#    the edit survived; purge and check state, keys and config are gone; reinstall and start
#    again.
# 6. Under a real systemd: another copy of the same root, booted with systemd-nspawn with only
#    loopback inside. One `PASS: <step>` line per step: install, `systemctl start` reaches
#    active (running) through READY=1; client, token and route over loopback; `systemctl
#    reload`; a reload with a broken file fails, names the key and the old configuration keeps
#    serving; a restart with a broken file ends `failed` without a restart loop; the fixed
#    file starts again; `systemctl stop` exits 0; `systemd-analyze security` online is at most
#    1.5; a reboot of the container brings the enabled unit up; `apt purge` removes
#    configuration, keys and data. A failure there prints the unit's journal.
#
# Root only (debootstrap, chroot, mounts, namespaces, systemd-nspawn). Missing tools
# (lintian, debootstrap, systemd-analyze, systemd-nspawn, jq, curl, iproute2, cargo-deb) are
# installed first. The script is idempotent: it removes the chroot and container root of a
# previous run before starting, and on exit kills what it started (the container too) and
# unmounts what it mounted. STEELCUT_DEB_KEEP_CHROOT=1 leaves the chroot and the container
# root in place (unmounted, stopped) for inspection; STEELCUT_DEB_SKIP_BUILD=1 reuses the .deb
# files of a previous run.

set -Eeuo pipefail

# --------------------------------------------------------------------------------------------
# Set-up, reporting, cleanup
# --------------------------------------------------------------------------------------------

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/packaging/test-deb.sh"
WORK="$ROOT/target/deb-test"
PRISTINE="$WORK/bookworm-pristine"
CHROOT="$WORK/chroot"
MACHINE="$WORK/machine"
MACHINE_NAME=steelcutd-test
MACHINE_CONSOLE="$WORK/machine-console.log"
NSPAWN_PID=""
MACHINE_PID=""
APT_CACHE="$WORK/apt-archives"
SUITE=bookworm
LISTEN=127.0.0.1:8080
ROUTE=/api_v0.0.1
AUDIENCE=api_v0.0.1
STEP="start"
STEP_STARTED=$(date +%s)
T0=$STEP_STARTED
DAEMON_LOG=/root/steelcutd-serve.log

say() { printf '%s\n' "$*"; }

# Prints a step header with the time the previous step took.
step() {
    local now
    now=$(date +%s)
    if [ "$STEP" != "start" ]; then
        printf '    (%s: %ss)\n' "$STEP" "$((now - STEP_STARTED))"
    fi
    STEP=$1
    STEP_STARTED=$now
    printf '\n==> [%4ss] %s\n' "$((now - T0))" "$STEP"
}

fail() {
    printf '\nFAILED in step "%s": %s\n' "$STEP" "$*" >&2
    exit 1
}

ok() { printf '    ok: %s\n' "$*"; }

# The one line per step of the systemd part that says it held.
pass() { printf 'PASS: %s\n' "$STEP"; }

# `check DESCRIPTION COMMAND...`: runs the command (its output indented), fails the run naming
# DESCRIPTION if it fails.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/        /'
        ok "$what"
    else
        [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/        /'
        fail "$what (command: $*)"
    fi
}

# `expect_eq DESCRIPTION EXPECTED ACTUAL`
expect_eq() {
    if [ "$2" = "$3" ]; then
        ok "$1: $3"
    else
        fail "$1: expected '$2', got '$3'"
    fi
}

on_error() {
    local rc=$? line=$1 cmd=$2
    printf '\nFAILED in step "%s": command exited %s at line %s: %s\n' "$STEP" "$rc" "$line" "$cmd" >&2
}

in_chroot() { chroot "$CHROOT" "$@"; }

# A field of the installed steelcutd package: Version, Status, ...
pkg_field() { in_chroot dpkg-query -W -f="\${$1}" steelcutd; }

# Every mount point at or below $1, deepest first.
mounts_below() {
    awk -v root="$1" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/self/mounts |
        sort -r
}

unmount_below() {
    local m
    for m in $(mounts_below "$1"); do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
}

# Deletes a chroot, refusing while anything is still mounted inside it (a bind-mounted /dev
# must never be deleted through it).
remove_tree() {
    local dir=$1
    [ -e "$dir" ] || return 0
    unmount_below "$dir"
    if [ -n "$(mounts_below "$dir")" ]; then
        fail "still mounted below $dir, not deleting it: $(mounts_below "$dir" | tr '\n' ' ')"
    fi
    rm -rf --one-file-system "$dir"
}

cleanup() {
    local rc=$? step_end
    trap - EXIT ERR
    step_end=$(date +%s)
    if [ -n "${DAEMON_PID:-}" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        sleep 1
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    # Only the outer run owns the chroot's mounts and the container (the netns helper shares
    # the mounts).
    if [ "${IN_NETNS:-0}" = 0 ]; then
        if [ "$rc" != 0 ] && [ -n "$NSPAWN_PID" ]; then
            machine_report || true
        fi
        kill_machine || true
        unmount_below "$CHROOT"
        unmount_below "$PRISTINE.tmp"
        local tree
        for tree in "$CHROOT" "$MACHINE"; do
            if [ "$rc" = 0 ] && [ "${STEELCUT_DEB_KEEP_CHROOT:-0}" != 1 ]; then
                remove_tree "$tree"
            elif [ -d "$tree" ]; then
                say "$tree left (unmounted, nothing running in it) for inspection; the next run removes it"
            fi
        done
        local now
        now=$(date +%s)
        printf '    (cleanup: %ss)\n' "$((now - step_end))"
        if [ "$rc" = 0 ]; then
            printf '    (%s: %ss)\n\nPASSED: packaging/test-deb.sh in %ss%s\n' \
                "$STEP" "$((step_end - STEP_STARTED))" "$((now - T0))" \
                "${SYSTEMD_SECS:+ (systemd part: ${SYSTEMD_SECS}s)}"
        else
            printf '\nFAILED: packaging/test-deb.sh after %ss (step "%s")\n' "$((now - T0))" "$STEP" >&2
        fi
    fi
    exit "$rc"
}

# --------------------------------------------------------------------------------------------
# The part that runs inside a private network namespace (so 127.0.0.1:8080 cannot clash with
# anything on the host): start the daemon as the unit would, get a token, read the resource.
# --------------------------------------------------------------------------------------------

# Waits until GET $1 answers $2, at most 60 s; fails naming the daemon log otherwise.
wait_for_status() {
    local url=$1 want=$2 got=000
    for _ in $(seq 1 120); do
        got=$(in_chroot curl -s -o /dev/null -w '%{http_code}' "$url" || true)
        [ "$got" = "$want" ] && return 0
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            say "--- daemon log ---"; cat "$CHROOT$DAEMON_LOG" || true
            fail "steelcutd exited before $url answered $want"
        fi
        sleep 0.5
    done
    say "--- daemon log ---"; cat "$CHROOT$DAEMON_LOG" || true
    fail "$url answered $got, not $want, after 60 s"
}

# Starts steelcutd as ExecStart= does: same command, same user.
start_daemon() {
    check "check-config (the first ExecReload=) passes as user steelcut" \
        in_chroot runuser -u steelcut -- /usr/bin/steelcutd check-config --no-database \
        --config /etc/steelcut.toml
    # A simple command in the background, so that $! is chroot, which execs runuser.
    chroot "$CHROOT" runuser -u steelcut -- /usr/bin/steelcutd serve --config /etc/steelcut.toml \
        >"$CHROOT$DAEMON_LOG" 2>&1 &
    RUNUSER_PID=$!
    # runuser forks the daemon and waits for it; signals go to the daemon itself, as systemd
    # sends them to the main process.
    DAEMON_PID=""
    for _ in $(seq 1 50); do
        DAEMON_PID=$(pgrep -P "$RUNUSER_PID" -x steelcutd || true)
        [ -n "$DAEMON_PID" ] && break
        sleep 0.1
    done
    [ -n "$DAEMON_PID" ] || { cat "$CHROOT$DAEMON_LOG" || true; fail "steelcutd did not start"; }
    expect_eq "steelcutd runs as user steelcut" \
        "$(in_chroot id -u steelcut)" "$(ps -o uid= -p "$DAEMON_PID" | tr -d ' ')"
    wait_for_status "http://$LISTEN/livez" 200
    ok "GET /livez answers 200"
    wait_for_status "http://$LISTEN/readyz" 200
    ok "GET /readyz answers 200"
}

# SIGTERM, as `systemctl stop` sends; the daemon must exit 0.
stop_daemon() {
    kill -TERM "$DAEMON_PID"
    local rc=0
    wait "$RUNUSER_PID" || rc=$?
    DAEMON_PID=""
    if [ "$rc" != 0 ]; then
        say "--- daemon log ---"; cat "$CHROOT$DAEMON_LOG" || true
        fail "steelcutd exited $rc after SIGTERM, not 0"
    fi
    ok "SIGTERM: steelcutd exited 0"
}

# The client side, shared by the chroot and the systemd parts: RUN is in_chroot or in_machine.

# `add_client RUN NAME`: registers a client for the example route with the admin CLI, as user
# steelcut; sets CLIENT_ID and CLIENT_SECRET.
add_client() {
    local run=$1 name=$2 client
    client=$("$run" runuser -u steelcut -- /usr/bin/steelcutd client add \
        --config /etc/steelcut.toml --name "$name" --resource "$AUDIENCE")
    CLIENT_ID=$(jq -er .client_id <<<"$client") || fail "client add printed no client_id: $client"
    CLIENT_SECRET=$(jq -er .client_secret <<<"$client") || fail "client add printed no client_secret"
    ok "client add: client $CLIENT_ID"
}

# `get_token RUN`: client credentials grant with HTTP Basic (RFC 6749 section 4.4), the secret
# on stdin; sets TOKEN and TOKEN_RESPONSE.
get_token() {
    local run=$1 headers body
    body=$(printf 'user = "%s:%s"\n' "$CLIENT_ID" "$CLIENT_SECRET" | "$run" curl -sS -K - \
        -D /root/token-headers -d grant_type=client_credentials -d "resource=$AUDIENCE" \
        "http://$LISTEN/token")
    headers=$("$run" cat /root/token-headers)
    grep -qi '^HTTP/[0-9.]* 200' <<<"$headers" || fail "POST /token: $(head -n1 <<<"$headers") $body"
    grep -qi '^cache-control: *no-store' <<<"$headers" || fail "POST /token without Cache-Control: no-store"
    TOKEN=$(jq -er .access_token <<<"$body") || fail "POST /token: no access_token in $body"
    TOKEN_RESPONSE=$body
    expect_eq "token_type" "bearer" "$(jq -r '.token_type | ascii_downcase' <<<"$body")"
    ok "POST /token issued an access token"
}

# `read_route RUN`: the route refuses a request without a token (RFC 6750 section 3) and
# serves the document with TOKEN.
read_route() {
    local run=$1 status body
    status=$("$run" curl -s -o /dev/null -w '%{http_code}' "http://$LISTEN$ROUTE")
    expect_eq "GET $ROUTE without a token" 401 "$status"
    body=$("$run" curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $TOKEN" \
        "http://$LISTEN$ROUTE")
    status=${body##*$'\n'}
    body=${body%$'\n'*}
    expect_eq "GET $ROUTE with the token: status" 200 "$status"
    expect_eq "GET $ROUTE with the token: document" \
        "$("$run" cat /usr/share/steelcutd/protected_resource.json | jq -cS .)" \
        "$(jq -cS . <<<"$body" 2>/dev/null || printf '%s' "$body")"
}

netns_first_start() {
    ip link set lo up
    start_daemon
    add_client in_chroot test-deb
    get_token in_chroot
    read_route in_chroot
    # Stop as systemd would.
    stop_daemon
}

netns_restart_after_reinstall() {
    ip link set lo up
    start_daemon
    stop_daemon
}

# --------------------------------------------------------------------------------------------
# The container for the systemd part: a copy of the pristine root booted with systemd-nspawn.
# --private-network leaves it only a loopback interface. --register=no and --keep-unit because
# the host need not run systemd itself (there is no machined or system bus to register with).
# --------------------------------------------------------------------------------------------

# True while PID runs. A child of this shell that has exited stays a zombie until waited for,
# so `kill -0` alone would still say yes.
alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${st:0:1}" != Z ]
}

# `in_machine COMMAND...`: runs COMMAND in all the container's namespaces with a clean
# environment (nothing of this shell's leaks in), for at most 120 s.
in_machine() {
    timeout --kill-after=5 120 nsenter --target "$MACHINE_PID" --all \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}

# Boots $MACHINE and waits, at most 90 s, until its systemd has finished booting (the start
# jobs of enabled units included).
boot_machine() {
    local deadline=$((SECONDS + 90)) state
    systemd-nspawn --quiet --boot --directory="$MACHINE" --machine="$MACHINE_NAME" \
        --register=no --keep-unit --private-network --link-journal=no --console=read-only \
        --setenv=SYSTEMD_COLORS=0 </dev/null >>"$MACHINE_CONSOLE" 2>&1 &
    NSPAWN_PID=$!
    # The container's PID 1 is nspawn's child, once that runs systemd.
    until MACHINE_PID=$(pgrep -P "$NSPAWN_PID" -x systemd); do
        alive "$NSPAWN_PID" || { tail -n 20 "$MACHINE_CONSOLE"; fail "systemd-nspawn exited"; }
        [ "$SECONDS" -lt "$deadline" ] || fail "no systemd in the container after 90 s"
        sleep 0.1
    done
    # Fails at once until the container's manager listens; then --wait returns at the end of
    # the boot.
    while :; do
        state=$(in_machine systemctl is-system-running --wait 2>/dev/null || true)
        case $state in
            running) break ;;
            degraded) in_machine systemctl --failed --no-legend | sed 's/^/        /'; break ;;
        esac
        [ "$SECONDS" -lt "$deadline" ] || fail "the container's systemd is '$state' after 90 s"
        sleep 0.2
    done
    ok "container booted: $(in_machine systemctl --version | head -n1), system $state"
}

# Shuts the container down in order (nspawn turns SIGTERM into a poweroff inside), at most
# 60 s; nspawn exits 0 only after a clean poweroff.
stop_machine() {
    local deadline=$((SECONDS + 60)) rc=0
    kill -TERM "$NSPAWN_PID"
    while alive "$NSPAWN_PID"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "the container did not shut down within 60 s"
        sleep 0.2
    done
    wait "$NSPAWN_PID" || rc=$?
    NSPAWN_PID=""
    MACHINE_PID=""
    expect_eq "systemd-nspawn exit status after the poweroff" 0 "$rc"
}

# Ends the container whatever its state: a poweroff first (10 s), then SIGKILL for its PID 1,
# which ends every process in its PID namespace (killing nspawn alone leaves them running).
kill_machine() {
    [ -n "$NSPAWN_PID" ] || return 0
    if alive "$NSPAWN_PID"; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            alive "$NSPAWN_PID" || break
            sleep 0.2
        done
    fi
    # Only a process in another PID namespace can still be the container's init (not a
    # reused pid).
    if [ -n "$MACHINE_PID" ] && alive "$MACHINE_PID" &&
        [ "$(readlink "/proc/$MACHINE_PID/ns/pid")" != "$(readlink /proc/self/ns/pid)" ]; then
        kill -KILL "$MACHINE_PID" 2>/dev/null || true
    fi
    kill -KILL "$NSPAWN_PID" 2>/dev/null || true
    wait "$NSPAWN_PID" 2>/dev/null || true
    NSPAWN_PID=""
    MACHINE_PID=""
    # nspawn leaves this behind when it does not get to clean up.
    rmdir "/run/systemd/nspawn/propagate/$MACHINE_NAME" 2>/dev/null || true
}

# On failure: what systemd and the journal say about steelcutd, and the end of the console.
machine_report() {
    if [ -n "$MACHINE_PID" ] && alive "$MACHINE_PID"; then
        say "--- systemctl status steelcutd ---"
        in_machine systemctl status --no-pager --lines=0 steelcutd.service || true
        say "--- journal of steelcutd.service (last 60 lines) ---"
        in_machine journalctl --no-pager --quiet --lines=60 --unit=steelcutd.service || true
    fi
    say "--- container console (last 20 lines; all of it in $MACHINE_CONSOLE) ---"
    tail -n 20 "$MACHINE_CONSOLE" 2>/dev/null || true
    # The console ends with a login prompt, without a newline.
    printf '\n'
}

# A property of the unit as systemd sees it (ActiveState, NRestarts, MainPID, ...).
unit_prop() { in_machine systemctl show --property="$1" --value steelcutd.service; }

# "ActiveState/SubState", such as active/running or failed/failed.
unit_state() { printf '%s/%s' "$(unit_prop ActiveState)" "$(unit_prop SubState)"; }

# `wait_unit STATE SECONDS`: polls until unit_state is STATE.
wait_unit() {
    local want=$1 deadline=$((SECONDS + $2)) got
    until got=$(unit_state) && [ "$got" = "$want" ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "steelcutd.service is $got, not $want, after $2 s"
        sleep 0.2
    done
    ok "steelcutd.service is $got"
}

# The journal's current end, for journal_since.
journal_cursor() {
    local cursor
    cursor=$(in_machine journalctl --quiet --lines=1 --output=export | sed -n 's/^__CURSOR=//p')
    [ -n "$cursor" ] || fail "no journal cursor in the container"
    printf '%s' "$cursor"
}

# steelcutd's journal (its output and systemd's messages about it) after a cursor.
journal_since() {
    in_machine journalctl --no-pager --quiet --unit=steelcutd.service --after-cursor="$1"
}

# `wait_journal CURSOR REGEX WHAT`: polls, at most 15 s, until steelcutd's journal after
# CURSOR has lines matching REGEX, and shows them.
wait_journal() {
    local deadline=$((SECONDS + 15)) lines
    until lines=$(journal_since "$1" | grep -E -- "$2"); do
        [ "$SECONDS" -lt "$deadline" ] || fail "the journal does not show $3 (/$2/)"
        sleep 0.3
    done
    printf '%s\n' "$lines" | sed 's/^/        /'
    ok "the journal shows $3"
}

# An unlabelled counter from /metrics.
metric() {
    in_machine curl -sS "http://$LISTEN/metrics" | awk -v name="$1" '$1 == name { print $2 }'
}

# `wait_metric NAME VALUE`: polls, at most 15 s, until the counter has VALUE.
wait_metric() {
    local deadline=$((SECONDS + 15)) got
    until got=$(metric "$1") && [ "$got" = "$2" ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$1 is '$got', not $2, after 15 s"
        sleep 0.2
    done
    ok "$1 $got"
}

# The pids of steelcutd processes in the container, or "none".
machine_daemons() {
    local pids rc=0
    pids=$(in_machine pgrep -x steelcutd) || rc=$?
    case $rc in
        0) printf '%s' "$pids" | tr '\n' ' ' ;;
        1) printf none ;;
        *) printf 'unknown (pgrep exited %s)' "$rc" ;;
    esac
}

if [ "${1:-}" = "__netns" ]; then
    IN_NETNS=1
    trap 'on_error $LINENO "$BASH_COMMAND"' ERR
    trap cleanup EXIT
    STEP=$3
    "$2"
    exit 0
fi

# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

IN_NETNS=0
trap 'on_error $LINENO "$BASH_COMMAND"' ERR
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "packaging/test-deb.sh must run as root (debootstrap, chroot, mounts)" >&2; exit 1; }
cd "$ROOT"

step "tools"
missing=()
for tool in lintian:lintian debootstrap:debootstrap systemd-analyze:systemd jq:jq curl:curl \
    ip:iproute2 dpkg-deb:dpkg unshare:util-linux nsenter:util-linux man:man-db pgrep:procps \
    systemd-nspawn:systemd-container; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked
fi
ok "$(cargo deb --version 2>&1 | head -n1), $(lintian --version), $(systemd-analyze --version | head -n1)"
SYSTEMD_VERSION=$(systemd-analyze --version | awk 'NR==1 { print $2 }')
[ "$SYSTEMD_VERSION" -ge 252 ] || fail "systemd-analyze $SYSTEMD_VERSION has no --offline (needs 252)"

# ---------------------------------------------------------------------------------------------
step "build the package (cargo deb)"
VERSION=$(cargo metadata --format-version 1 --no-deps |
    jq -r '.packages[] | select(.name == "steelcutd") | .version')
DEB1="$ROOT/target/debian/steelcutd_${VERSION}-1_amd64.deb"
# cargo deb deletes every other steelcutd_*.deb in target/debian/, so the -2 revision lives
# under target/deb-test/.
DEB2="$WORK/debs/steelcutd_${VERSION}-2_amd64.deb"
if [ "${STEELCUT_DEB_SKIP_BUILD:-0}" = 1 ] && [ -f "$DEB1" ] && [ -f "$DEB2" ]; then
    say "reusing $DEB1 and $DEB2 (STEELCUT_DEB_SKIP_BUILD=1)"
else
    rm -f "$DEB1" "$DEB2"
    mkdir -p "$WORK/debs"
    # The build, packaged as the next revision: what the upgrade test installs ...
    cargo deb --deb-revision 2 --output "$DEB2"
    # ... and the same binary as revision 1, the package this script is about.
    cargo deb --no-build
fi
check "built $DEB1" test -f "$DEB1"
check "built $DEB2" test -f "$DEB2"

# ---------------------------------------------------------------------------------------------
step "dpkg-deb: fields, contents, modes, conffiles, scripts"
dpkg-deb --info "$DEB1" | sed 's/^/    /'
expect_eq "Package" steelcutd "$(dpkg-deb -f "$DEB1" Package)"
expect_eq "Version" "${VERSION}-1" "$(dpkg-deb -f "$DEB1" Version)"
expect_eq "Architecture" amd64 "$(dpkg-deb -f "$DEB1" Architecture)"
DEPENDS=$(dpkg-deb -f "$DEB1" Depends)
for dep in 'systemd | systemd-standalone-sysusers' procps libc6 libsqlite3-0 libpq5; do
    case ", $DEPENDS," in
        *", $dep"[\ ,]*) ok "Depends has $dep" ;;
        *) fail "Depends lacks '$dep': $DEPENDS" ;;
    esac
done

CONTENTS=$(dpkg-deb --contents "$DEB1")
printf '%s\n' "$CONTENTS" | sed 's/^/    /'
# `expect_entry MODE OWNER PATH`: the file is in the package with that mode and owner (the
# archive stores ids; tar shows names only when it has them).
expect_entry() {
    local line
    line=$(awk -v p="./$3" '$6 == p { sub(/^root\/root$/, "0/0", $2); print $1, $2 }' <<<"$CONTENTS")
    [ -n "$line" ] || fail "$3 is not in the package"
    expect_eq "/$3" "$1 $2" "$line"
}
expect_entry -rwxr-xr-x 0/0 usr/bin/steelcutd
expect_entry -rw-r----- 0/0 etc/steelcut.toml
expect_entry -rw-r--r-- 0/0 usr/lib/systemd/system/steelcutd.service
expect_entry -rw-r--r-- 0/0 usr/lib/sysusers.d/steelcutd.conf
expect_entry -rw-r--r-- 0/0 usr/share/man/man8/steelcutd.8.gz
expect_entry -rw-r--r-- 0/0 usr/share/steelcutd/protected_resource.json
for f in copyright changelog.Debian.gz README.md README.Debian examples/auth-only.toml \
    examples/resource-only.toml examples/both.toml examples/postgresql.toml \
    examples/ip-restrict.conf; do
    expect_entry -rw-r--r-- 0/0 "usr/share/doc/steelcutd/$f"
done
expect_entry -rw-r--r-- 0/0 usr/share/lintian/overrides/steelcutd

CTRL=$(mktemp -d)
dpkg-deb --control "$DEB1" "$CTRL"
expect_eq "conffiles" "/etc/steelcut.toml" "$(cat "$CTRL/conffiles")"
check "postinst runs systemd-sysusers" grep -q 'systemd-sysusers' "$CTRL/postinst"
check "postinst enables the unit" grep -q 'deb-systemd-helper enable steelcutd.service' "$CTRL/postinst"
check "postinst sets root:steelcut 0640 with dpkg-statoverride" \
    grep -q 'dpkg-statoverride --update --add root steelcut 0640' "$CTRL/postinst"
check "postrm purges state and keys" grep -q 'rm -rf /var/lib/steelcut /etc/steelcut' "$CTRL/postrm"
check "maintainer scripts are valid sh" sh -n "$CTRL/postinst" "$CTRL/postrm" "$CTRL/prerm"
rm -rf "$CTRL"
PKG=$(mktemp -d)
dpkg-deb --extract "$DEB1" "$PKG"
check "the packaged unit is packaging/steelcutd.service" \
    cmp -s "$PKG/usr/lib/systemd/system/steelcutd.service" packaging/steelcutd.service
check "the packaged config is config/steelcut.toml" cmp -s "$PKG/etc/steelcut.toml" config/steelcut.toml
check "the man page renders without warnings" \
    sh -c "LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z '$PKG/usr/share/man/man8/steelcutd.8.gz' 2>&1 >/dev/null | (! grep .)"
rm -rf "$PKG"

# ---------------------------------------------------------------------------------------------
step "lintian"
# Fails on errors and on warnings that are not overridden (packaging/lintian-overrides);
# info tags are shown, not fatal. (--show-overrides would make overridden tags count too.)
# Lintian advises against running as root and needs nothing root can do.
# A world-readable copy, since the checkout may sit where nobody cannot look.
LINT_DIR=$(mktemp -d)
chmod 755 "$LINT_DIR"
install -m 644 "$DEB1" "$LINT_DIR/"
LINTIAN=(lintian)
id nobody >/dev/null 2>&1 && LINTIAN=(runuser -u nobody -- lintian)
(cd / && "${LINTIAN[@]}" --fail-on error,warning --display-info --pedantic \
    "$LINT_DIR/$(basename "$DEB1")") 2>&1 | sed 's/^/    /' ||
    { rm -rf "$LINT_DIR"; fail "lintian reported errors or warnings (above)"; }
rm -rf "$LINT_DIR"
OVERRIDES=$(grep -c '^steelcutd: ' packaging/lintian-overrides)
ok "overridden with a reason in packaging/lintian-overrides: $OVERRIDES tag(s)"
ok "lintian: no error, no unexplained warning"

# ---------------------------------------------------------------------------------------------
step "systemd-analyze security (offline)"
SECURITY=$(systemd-analyze security --offline=true --threshold=15 packaging/steelcutd.service 2>&1) ||
    { printf '%s\n' "$SECURITY"; fail "exposure above 1.5"; }
printf '%s\n' "$SECURITY" | grep -E '✗|Overall' | sed 's/^/    /'
EXPOSURE=$(printf '%s\n' "$SECURITY" | sed -n 's/.*Overall exposure level for steelcutd.service: \([0-9.]*\).*/\1/p')
[ -n "$EXPOSURE" ] || fail "no exposure level in systemd-analyze output"
check "exposure $EXPOSURE <= 1.5" awk -v e="$EXPOSURE" 'BEGIN { exit !(e <= 1.5) }'

# ---------------------------------------------------------------------------------------------
step "Debian $SUITE chroot"
# The mirror apt uses on this machine (deb822 .sources first, then one-line sources.list).
MIRROR=${DEBIAN_MIRROR:-}
if [ -z "$MIRROR" ]; then
    MIRROR=$(awk '
        /^[[:space:]]*$/ { if (uri != "" && suite) { print uri; exit } uri = ""; suite = 0; next }
        /^URIs:/ { uri = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
        END { if (uri != "" && suite) print uri }' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        head -n1 || true)
fi
if [ -z "$MIRROR" ] && [ -f /etc/apt/sources.list ]; then
    MIRROR=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($(i + 1) == "bookworm") print $i; break } }' \
        /etc/apt/sources.list | head -n1)
fi
[ -n "$MIRROR" ] || fail "no Debian mirror for $SUITE in /etc/apt/sources.list{,.d/*.sources}; set DEBIAN_MIRROR"
say "    mirror: $MIRROR"
# systemd and procps are what Depends names (pre-installed to keep reruns off the network as
# far as possible; apt still resolves the rest), curl is the test's HTTP client, man-db lets
# `systemd-analyze verify` check the unit's Documentation= page. The systemd part boots a copy
# of the same root, which has no network: systemd-sysv (/sbin/init) and dbus make it bootable,
# and libpq5 and libsqlite3-0 are the rest of Depends, so that dpkg -i needs nothing else.
RECIPE="debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps,curl,ca-certificates,man-db,libpq5,libsqlite3-0 $SUITE"
if [ "$(cat "$PRISTINE/.pristine-recipe" 2>/dev/null)" != "$RECIPE" ]; then
    say "    $RECIPE (cached in $PRISTINE until the recipe changes)"
    remove_tree "$PRISTINE"
    remove_tree "$PRISTINE.tmp"
    mkdir -p "$WORK"
    # shellcheck disable=SC2086 # the recipe is a word list on purpose
    $RECIPE "$PRISTINE.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 30 "$WORK/debootstrap.log"; fail "debootstrap failed (log: $WORK/debootstrap.log)"; }
    unmount_below "$PRISTINE.tmp"
    printf '%s' "$RECIPE" >"$PRISTINE.tmp/.pristine-recipe"
    mv "$PRISTINE.tmp" "$PRISTINE"
fi
remove_tree "$CHROOT"
cp -a "$PRISTINE" "$CHROOT"
rm -f "$CHROOT/.pristine-recipe"
mount -t proc proc "$CHROOT/proc"
mount --bind /dev "$CHROOT/dev"
# Private, so that nothing mounted or unmounted below it can reach the host's /dev.
mount --make-private "$CHROOT/dev"
mkdir -p "$APT_CACHE/partial"
mount --bind "$APT_CACHE" "$CHROOT/var/cache/apt/archives"
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf" 2>/dev/null || true
# Nothing may start services inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$CHROOT/usr/sbin/policy-rc.d"
chmod 755 "$CHROOT/usr/sbin/policy-rc.d"
mkdir -p "$CHROOT/root/debs"
cp "$DEB1" "$DEB2" "$CHROOT/root/debs/"
ok "chroot ready in $CHROOT ($(in_chroot cat /etc/debian_version))"

# ---------------------------------------------------------------------------------------------
step "install"
in_chroot env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# apt resolves Depends from the mirror, so a dependency Debian 12 cannot satisfy fails here.
in_chroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Use-Pty=0 "/root/debs/$(basename "$DEB1")" 2>&1 | sed 's/^/    /'
expect_eq "installed version" "${VERSION}-1" "$(pkg_field Version)"
expect_eq "package state" "install ok installed" "$(pkg_field Status)"

check_installed_state() {
    local pw
    pw=$(in_chroot getent passwd steelcut) || fail "no user steelcut"
    expect_eq "steelcut's shell" /usr/sbin/nologin "$(cut -d: -f7 <<<"$pw")"
    expect_eq "steelcut's home" /var/lib/steelcut "$(cut -d: -f6 <<<"$pw")"
    check "steelcut is a system user (uid $(cut -d: -f3 <<<"$pw") < 1000)" \
        test "$(cut -d: -f3 <<<"$pw")" -lt 1000
    check "group steelcut exists" sh -c "chroot '$CHROOT' getent group steelcut >/dev/null"
    expect_eq "/etc/steelcut.toml" "root:steelcut 640" \
        "$(in_chroot stat -c '%U:%G %a' /etc/steelcut.toml)"
    expect_eq "/etc/steelcut/keys" "steelcut:steelcut 700" \
        "$(in_chroot stat -c '%U:%G %a' /etc/steelcut/keys)"
    expect_eq "/var/lib/steelcut" "steelcut:steelcut 750" \
        "$(in_chroot stat -c '%U:%G %a' /var/lib/steelcut)"
    local keys
    keys=$(in_chroot find /etc/steelcut/keys -name '*.pem' -printf '%u:%g %m %f\n')
    [ -n "$keys" ] || fail "postinst generated no signing key in /etc/steelcut/keys"
    ok "signing key: $keys"
    local bad
    bad=$(grep -v '^steelcut:steelcut 600 ' <<<"$keys" || true)
    [ -z "$bad" ] || fail "signing keys must be steelcut:steelcut 600: $bad"
    local link=/etc/systemd/system/multi-user.target.wants/steelcutd.service
    check "enabled-unit symlink $link" test -L "$CHROOT$link"
    expect_eq "it points at the unit" /usr/lib/systemd/system/steelcutd.service \
        "$(in_chroot readlink -f "$link")"
}
check_installed_state

# ---------------------------------------------------------------------------------------------
step "systemd-analyze verify and the example configs (in the chroot)"
# Run in the chroot, where the unit's binary, user and man page exist as on a real install
# (on the build host ExecStart= names a file that is not there, which verify reports).
VERIFY=$(in_chroot systemd-analyze verify steelcutd.service 2>&1) ||
    { printf '%s\n' "$VERIFY"; fail "systemd-analyze verify failed"; }
[ -z "$VERIFY" ] || { printf '%s\n' "$VERIFY"; fail "systemd-analyze verify printed warnings"; }
ok "systemd-analyze verify steelcutd.service: clean"
for example in auth-only both postgresql resource-only; do
    # The PostgreSQL example names a server that does not exist here: everything but the
    # connection is checked.
    check "examples/$example.toml passes check-config --no-database" in_chroot \
        /usr/bin/steelcutd check-config --no-database \
        --config "/usr/share/doc/steelcutd/examples/$example.toml"
done

# ---------------------------------------------------------------------------------------------
step "start steelcutd as the unit does; client, token, resource"
unshare --net -- bash "$SELF" __netns netns_first_start "$STEP"
check "the daemon created its SQLite database as steelcut" \
    test "$(in_chroot stat -c %U /var/lib/steelcut/steelcut.db)" = steelcut

# ---------------------------------------------------------------------------------------------
step "upgrade over an edited conffile (--force-confold)"
# Revision 2 ships a different default /etc/steelcut.toml, so dpkg really has two versions of
# the conffile to choose from (an unchanged default would be kept whatever the options).
UNPACKED="$WORK/deb2-unpacked"
rm -rf "$UNPACKED"
dpkg-deb --raw-extract "$DEB2" "$UNPACKED"
printf '# default changed in revision 2\n' >>"$UNPACKED/etc/steelcut.toml"
dpkg-deb --root-owner-group -Zgzip -z1 --build "$UNPACKED" "$CHROOT/root/debs/steelcutd-2-newconf.deb" >/dev/null
rm -rf "$UNPACKED"
in_chroot sed -i 's/^level = .*/level = "debug"/' /etc/steelcut.toml
printf '# edited by test-deb.sh\n' >>"$CHROOT/etc/steelcut.toml"
EDITED=$(sha256sum <"$CHROOT/etc/steelcut.toml")
KEYS_BEFORE=$(ls "$CHROOT/etc/steelcut/keys")
in_chroot env DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold \
    /root/debs/steelcutd-2-newconf.deb 2>&1 | sed 's/^/    /'
expect_eq "upgraded version" "${VERSION}-2" "$(pkg_field Version)"
expect_eq "the edited /etc/steelcut.toml survived" "$EDITED" "$(sha256sum <"$CHROOT/etc/steelcut.toml")"
check "the edit is still there" grep -q '^# edited by test-deb.sh$' "$CHROOT/etc/steelcut.toml"
check "the new default was set aside as /etc/steelcut.toml.dpkg-dist" \
    grep -q '^# default changed in revision 2$' "$CHROOT/etc/steelcut.toml.dpkg-dist"
expect_eq "signing keys kept" "$KEYS_BEFORE" "$(ls "$CHROOT/etc/steelcut/keys")"
check "the database kept" test -f "$CHROOT/var/lib/steelcut/steelcut.db"
check_installed_state

# ---------------------------------------------------------------------------------------------
step "purge"
in_chroot dpkg --purge steelcutd 2>&1 | sed 's/^/    /'
check "package gone" sh -c "! chroot '$CHROOT' dpkg-query -W -f='\${Status}' steelcutd 2>/dev/null | grep -q installed"
for gone in /etc/steelcut.toml /etc/steelcut.toml.dpkg-dist /etc/steelcut /var/lib/steelcut \
    /usr/bin/steelcutd \
    /etc/systemd/system/multi-user.target.wants/steelcutd.service; do
    check "$gone removed" test ! -e "$CHROOT$gone" -a ! -L "$CHROOT$gone"
done
check "statoverride for /etc/steelcut.toml removed" \
    sh -c "! chroot '$CHROOT' dpkg-statoverride --list /etc/steelcut.toml"

# ---------------------------------------------------------------------------------------------
step "reinstall after purge"
in_chroot env DEBIAN_FRONTEND=noninteractive dpkg -i "/root/debs/$(basename "$DEB1")" 2>&1 |
    sed 's/^/    /'
expect_eq "reinstalled version" "${VERSION}-1" "$(pkg_field Version)"
check_installed_state
check "the default config is back" cmp -s "$CHROOT/etc/steelcut.toml" config/steelcut.toml
unshare --net -- bash "$SELF" __netns netns_restart_after_reinstall "$STEP"

# ---------------------------------------------------------------------------------------------
# Under a real systemd. Every wait is bounded: in_machine stops any command after 120 s and
# each poll has its own deadline.
# ---------------------------------------------------------------------------------------------
SYSTEMD_T0=$(date +%s)
DEB1_NAME=$(basename "$DEB1")

step "systemd: boot Debian $SUITE in a container"
remove_tree "$MACHINE"
cp -a "$PRISTINE" "$MACHINE"
rm -f "$MACHINE/.pristine-recipe"
# The debootstrap root has this host's name; journal lines name the container instead.
printf '%s\n' "$MACHINE_NAME" >"$MACHINE/etc/hostname"
mkdir -p "$MACHINE/root/debs"
cp "$DEB1" "$MACHINE/root/debs/"
: >"$MACHINE_CONSOLE"
boot_machine
expect_eq "network interfaces in the container" lo "$(in_machine ls /sys/class/net | tr '\n' ' ' | sed 's/ $//')"
pass

# ---------------------------------------------------------------------------------------------
step "systemd: install; systemctl start reaches active (running) through READY=1"
in_machine env DEBIAN_FRONTEND=noninteractive dpkg -i "/root/debs/$DEB1_NAME" 2>&1 | sed 's/^/    /'
expect_eq "enabled by the install" enabled "$(in_machine systemctl is-enabled steelcutd.service)"
expect_eq "not started by the install" inactive/dead "$(unit_state)"
expect_eq "Type" notify "$(unit_prop Type)"
# With Type=notify, `systemctl start` returns once READY=1 has arrived, and the daemon sends it
# only with its listener bound: so no waiting below.
check "systemctl start steelcutd" in_machine systemctl start steelcutd.service
expect_eq "state when systemctl start returned" active/running "$(unit_state)"
# The notify socket works: systemd shows the STATUS= the daemon sent along with READY=1.
STATUS_TEXT=$(unit_prop StatusText)
[ -n "$STATUS_TEXT" ] || fail "no STATUS= from the daemon (StatusText is empty)"
ok "STATUS= sent with READY=1: $STATUS_TEXT"
expect_eq "GET /livez as soon as systemctl start returned" 200 \
    "$(in_machine curl -s -o /dev/null -w '%{http_code}' "http://$LISTEN/livez")"
MAIN_PID=$(unit_prop MainPID)
expect_eq "the main process runs as" steelcut "$(in_machine ps -o user= -p "$MAIN_PID")"
expect_eq "LimitNOFILE" 65536 "$(unit_prop LimitNOFILE)"
# systemd cannot give a service a hard limit above its own when it lacks CAP_SYS_RESOURCE
# (some CI sandboxes): it then grants the closest it can, its own hard limit.
INIT_NOFILE=$(awk '/^Max open files/ { print $5 }' "/proc/$MACHINE_PID/limits")
WANT_NOFILE=65536
if [ "$INIT_NOFILE" -lt "$WANT_NOFILE" ]; then
    say "    note: the container's systemd has a hard open-file limit of $INIT_NOFILE only (this host caps it), so that is what LimitNOFILE=65536 can grant"
    WANT_NOFILE=$INIT_NOFILE
fi
expect_eq "open files of the main process (soft hard)" "$WANT_NOFILE $WANT_NOFILE" \
    "$(in_machine cat "/proc/$MAIN_PID/limits" | awk '/^Max open files/ { print $4, $5 }')"
pass

# ---------------------------------------------------------------------------------------------
step "systemd: client add as user steelcut, token and route over loopback"
add_client in_machine test-systemd
get_token in_machine
read_route in_machine
pass

# ---------------------------------------------------------------------------------------------
step "systemd: systemctl reload"
RELOADS=$(metric steelcut_reloads_total)
CURSOR=$(journal_cursor)
check "systemctl reload steelcutd" in_machine systemctl reload steelcutd.service
wait_journal "$CURSOR" 'Reloaded steelcutd.service' "systemd's reload message"
# The SIGHUP reached the daemon, which applied the file.
wait_metric steelcut_reloads_total "$((RELOADS + 1))"
wait_unit active/running 15
expect_eq "MainPID after the reload" "$MAIN_PID" "$(unit_prop MainPID)"
pass

# ---------------------------------------------------------------------------------------------
step "systemd: reload with a broken file fails, names the key, keeps serving"
in_machine cp -p /etc/steelcut.toml /root/steelcut.toml.good
# An out-of-range value: valid TOML, so only steelcutd's own validation can catch it. Written
# through the same inode, as an editor would leave mode and owner.
in_machine sh -c "sed 's/^token_lifetime_secs = .*/token_lifetime_secs = 5/' /root/steelcut.toml.good >/etc/steelcut.toml"
check "/etc/steelcut.toml now has token_lifetime_secs = 5" \
    in_machine grep -qx 'token_lifetime_secs = 5' /etc/steelcut.toml
RELOADS=$(metric steelcut_reloads_total)
FAILURES=$(metric steelcut_reload_failures_total)
CURSOR=$(journal_cursor)
RC=0
in_machine systemctl reload steelcutd.service 2>&1 | sed 's/^/        /' || RC=$?
[ "$RC" != 0 ] || fail "systemctl reload succeeded with a broken file"
ok "systemctl reload exited $RC"
wait_journal "$CURSOR" 'token_lifetime_secs' "the key at fault"
wait_journal "$CURSOR" 'Reload failed for steelcutd.service' "the failed reload"
expect_eq "state after the failed reload" active/running "$(unit_state)"
expect_eq "MainPID after the failed reload" "$MAIN_PID" "$(unit_prop MainPID)"
# check-config stopped it before any SIGHUP: the daemon saw no reload at all.
expect_eq "steelcut_reloads_total" "$RELOADS" "$(metric steelcut_reloads_total)"
expect_eq "steelcut_reload_failures_total" "$FAILURES" "$(metric steelcut_reload_failures_total)"
get_token in_machine
expect_eq "expires_in (the running configuration's token lifetime)" 3600 \
    "$(jq -r .expires_in <<<"$TOKEN_RESPONSE")"
read_route in_machine
pass

# ---------------------------------------------------------------------------------------------
step "systemd: restart with a broken file ends failed, no restart loop"
CURSOR=$(journal_cursor)
RC=0
in_machine systemctl restart steelcutd.service 2>&1 | sed 's/^/        /' || RC=$?
[ "$RC" != 0 ] || fail "systemctl restart succeeded with a broken file"
ok "systemctl restart exited $RC"
# A restart loop would show within three RestartSec=2s: watch that long.
SAMPLES=0
WATCH_END=$((SECONDS + 7))
while [ "$SECONDS" -lt "$WATCH_END" ]; do
    STATE=$(unit_state)
    RESTARTS=$(unit_prop NRestarts)
    if [ "$STATE" != failed/failed ] || [ "$RESTARTS" != 0 ]; then
        fail "after $SAMPLES samples: steelcutd.service is $STATE with NRestarts=$RESTARTS"
    fi
    SAMPLES=$((SAMPLES + 1))
    sleep 0.5
done
ok "failed/failed with NRestarts=0 in each of $SAMPLES samples over 6 s"
expect_eq "Result" exit-code "$(unit_prop Result)"
expect_eq "exit status of the main process" 78 "$(unit_prop ExecMainStatus)"
wait_journal "$CURSOR" 'token_lifetime_secs' "the key at fault"
wait_journal "$CURSOR" 'status=78/CONFIG' "exit status 78"
expect_eq "steelcutd processes" none "$(machine_daemons)"
pass

# ---------------------------------------------------------------------------------------------
step "systemd: fixed file, systemctl start works again"
in_machine sh -c 'cat /root/steelcut.toml.good >/etc/steelcut.toml'
check "systemctl start steelcutd" in_machine systemctl start steelcutd.service
expect_eq "state" active/running "$(unit_state)"
expect_eq "NRestarts" 0 "$(unit_prop NRestarts)"
MAIN_PID=$(unit_prop MainPID)
get_token in_machine
read_route in_machine
pass

# ---------------------------------------------------------------------------------------------
step "systemd: systemctl stop exits 0"
check "systemctl stop steelcutd" in_machine systemctl stop steelcutd.service
expect_eq "state" inactive/dead "$(unit_state)"
expect_eq "Result" success "$(unit_prop Result)"
# ExecMainCode 1 is CLD_EXITED: the process exited by itself (after SIGTERM), status 0.
expect_eq "main process (code status)" "1 0" "$(unit_prop ExecMainCode) $(unit_prop ExecMainStatus)"
expect_eq "steelcutd processes" none "$(machine_daemons)"
pass

# ---------------------------------------------------------------------------------------------
step "systemd: systemd-analyze security (online)"
SECURITY=$(in_machine systemd-analyze security --no-pager --threshold=15 steelcutd.service 2>&1) ||
    { printf '%s\n' "$SECURITY"; fail "exposure above 1.5"; }
printf '%s\n' "$SECURITY" | grep -E '✗|Overall' | sed 's/^/    /'
EXPOSURE_ONLINE=$(printf '%s\n' "$SECURITY" | sed -n 's/.*Overall exposure level for steelcutd.service: \([0-9.]*\).*/\1/p')
[ -n "$EXPOSURE_ONLINE" ] || fail "no exposure level in systemd-analyze output"
check "exposure $EXPOSURE_ONLINE <= 1.5 (offline: $EXPOSURE)" \
    awk -v e="$EXPOSURE_ONLINE" 'BEGIN { exit !(e <= 1.5) }'
pass

# ---------------------------------------------------------------------------------------------
step "systemd: a reboot of the container brings the enabled unit up"
expect_eq "before the reboot" inactive/dead "$(unit_state)"
stop_machine
boot_machine
wait_unit active/running 30
expect_eq "NRestarts" 0 "$(unit_prop NRestarts)"
# The client registered before the reboot: the database survived it.
get_token in_machine
read_route in_machine
pass

# ---------------------------------------------------------------------------------------------
step "systemd: apt purge removes configuration, keys and data"
check "a signing key before the purge" test -n "$(find "$MACHINE/etc/steelcut/keys" -name '*.pem')"
check "a database before the purge" test -f "$MACHINE/var/lib/steelcut/steelcut.db"
in_machine env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o Dpkg::Use-Pty=0 steelcutd 2>&1 |
    sed 's/^/    /'
PKG_STATE=$(in_machine dpkg-query -W -f="\${Status}" steelcutd 2>/dev/null || true)
case $PKG_STATE in
    "" | *" not-installed") ok "package gone${PKG_STATE:+ ($PKG_STATE)}" ;;
    *) fail "package state after the purge: $PKG_STATE" ;;
esac
expect_eq "steelcutd processes" none "$(machine_daemons)"
expect_eq "the unit" not-found "$(unit_prop LoadState)"
for gone in /etc/steelcut.toml /etc/steelcut /var/lib/steelcut /usr/bin/steelcutd \
    /etc/systemd/system/multi-user.target.wants/steelcutd.service; do
    check "$gone removed" test ! -e "$MACHINE$gone" -a ! -L "$MACHINE$gone"
done
if in_machine dpkg-statoverride --list /etc/steelcut.toml; then
    fail "statoverride for /etc/steelcut.toml still there"
fi
ok "statoverride for /etc/steelcut.toml removed"
pass
stop_machine
SYSTEMD_SECS=$(($(date +%s) - SYSTEMD_T0))
say "    systemd part: ${SYSTEMD_SECS}s"
