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
#
# Root only (debootstrap, chroot, mounts, namespaces). Missing tools (lintian, debootstrap,
# systemd-analyze, jq, curl, iproute2, cargo-deb) are installed first. The script is
# idempotent: it removes the chroot of a previous run before starting, and on exit kills
# what it started and unmounts what it mounted. STEELCUT_DEB_KEEP_CHROOT=1 leaves the chroot
# in place (unmounted) for inspection; STEELCUT_DEB_SKIP_BUILD=1 reuses the .deb files of a
# previous run.

set -Eeuo pipefail

# --------------------------------------------------------------------------------------------
# Set-up, reporting, cleanup
# --------------------------------------------------------------------------------------------

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/packaging/test-deb.sh"
WORK="$ROOT/target/deb-test"
PRISTINE="$WORK/bookworm-pristine"
CHROOT="$WORK/chroot"
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
    local rc=$?
    trap - EXIT ERR
    if [ -n "${DAEMON_PID:-}" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        sleep 1
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    # Only the outer run owns the chroot's mounts (the netns helper shares them).
    if [ "${IN_NETNS:-0}" = 0 ]; then
        unmount_below "$CHROOT"
        unmount_below "$PRISTINE.tmp"
        if [ "$rc" = 0 ] && [ "${STEELCUT_DEB_KEEP_CHROOT:-0}" != 1 ]; then
            remove_tree "$CHROOT"
        elif [ -d "$CHROOT" ]; then
            say "chroot left in $CHROOT (unmounted) for inspection; the next run removes it"
        fi
        local now
        now=$(date +%s)
        if [ "$rc" = 0 ]; then
            printf '    (%s: %ss)\n\nPASSED: packaging/test-deb.sh in %ss\n' \
                "$STEP" "$((now - STEP_STARTED))" "$((now - T0))"
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
        in_chroot runuser -u steelcut -- /usr/bin/steelcutd check-config --config /etc/steelcut.toml
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

netns_first_start() {
    ip link set lo up
    start_daemon

    # 1. Register a client for the example route with the admin CLI, as user steelcut.
    local client id secret
    client=$(in_chroot runuser -u steelcut -- /usr/bin/steelcutd client add \
        --config /etc/steelcut.toml --name test-deb --resource "$AUDIENCE")
    id=$(jq -er .client_id <<<"$client") || fail "client add printed no client_id: $client"
    secret=$(jq -er .client_secret <<<"$client") || fail "client add printed no client_secret"
    ok "client add: client $id"

    # 2. Client credentials grant with HTTP Basic (RFC 6749 section 4.4), secret on stdin.
    local headers="$CHROOT/root/token-headers" body token
    body=$(printf 'user = "%s:%s"\n' "$id" "$secret" | in_chroot curl -sS -K - \
        -D /root/token-headers -d grant_type=client_credentials -d "resource=$AUDIENCE" \
        "http://$LISTEN/token")
    grep -qi '^HTTP/[0-9.]* 200' "$headers" || fail "POST /token: $(head -n1 "$headers") $body"
    grep -qi '^cache-control: *no-store' "$headers" || fail "POST /token without Cache-Control: no-store"
    token=$(jq -er .access_token <<<"$body") || fail "POST /token: no access_token in $body"
    expect_eq "token_type" "bearer" "$(jq -r '.token_type | ascii_downcase' <<<"$body")"
    ok "POST /token issued an access token"

    # 3. The resource refuses a request without a token (RFC 6750 section 3) ...
    local status
    status=$(in_chroot curl -s -o /dev/null -w '%{http_code}' "http://$LISTEN$ROUTE")
    expect_eq "GET $ROUTE without a token" 401 "$status"

    # 4. ... and serves the document with it.
    body=$(in_chroot curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $token" \
        "http://$LISTEN$ROUTE")
    status=${body##*$'\n'}
    body=${body%$'\n'*}
    expect_eq "GET $ROUTE with the token: status" 200 "$status"
    expect_eq "GET $ROUTE with the token: document" \
        "$(jq -cS . "$CHROOT/usr/share/steelcutd/protected_resource.json")" \
        "$(jq -cS . <<<"$body" 2>/dev/null || printf '%s' "$body")"

    # 5. Stop as systemd would.
    stop_daemon
}

netns_restart_after_reinstall() {
    ip link set lo up
    start_daemon
    stop_daemon
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
    ip:iproute2 dpkg-deb:dpkg unshare:util-linux man:man-db pgrep:procps; do
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
# `systemd-analyze verify` check the unit's Documentation= page.
RECIPE="debootstrap --variant=minbase --include=systemd,procps,curl,ca-certificates,man-db $SUITE"
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
    check "examples/$example.toml passes check-config" in_chroot \
        /usr/bin/steelcutd check-config --config "/usr/share/doc/steelcutd/examples/$example.toml"
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
