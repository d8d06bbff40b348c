#!/usr/bin/env bash
# Load benchmark for steelcutd: builds release binaries, starts steelcutd on SQLite and on a
# throwaway PostgreSQL cluster plus a minimal hyper baseline server, drives each scenario with
# wrk over loopback (bounded duration and connections) and prints a table: requests/s, p50/p99
# latency, errors, peak RSS of the daemon, and the ratio to the baseline.
#
#   benches/run.sh                 # full run: 10 s per scenario, 32 connections
#   benches/run.sh --smoke         # 2 s per scenario (CI proves the harness works)
#   benches/run.sh --duration 20 --connections 64 --out docs/bench-latest.md
#
# Needs: wrk (Debian package `wrk`), curl, PostgreSQL server binaries (initdb/postgres; run as
# the `postgres` user when this script runs as root). Everything it starts, it stops.
set -euo pipefail

DURATION=10
CONNS=32
OUT=""
SMOKE=0
while (($#)); do
    case "$1" in
        --smoke) SMOKE=1; DURATION=2 ;;
        --duration) DURATION="$2"; shift ;;
        --connections) CONNS="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
ROOT=$PWD
for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required (apt-get install $tool)" >&2; exit 1; }
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "bench: PostgreSQL server binaries not found under /usr/lib/postgresql" >&2; exit 1; }

echo "== building release binaries" >&2
cargo build --release --quiet --bin steelcutd --example baseline-server --example argon2-verify
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/steelcutd
BASE=$TARGET/release/examples/baseline-server

WORK=$(mktemp -d /tmp/steelcut-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${PGDATA_DIR:-}" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_ready() { # url
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench: $1 never became ready" >&2
    return 1
}

# The document has a directory of its own, as in production: the daemon watches the directory
# of every route file, and the daemons' log, written to $WORK every 50 ms, would wake the
# watcher with changes that are not the document's.
mkdir -p "$WORK/docs"
echo '{"about": "This is a protected resource", "items": [1, 2, 3, 4, 5, 6, 7, 8]}' >"$WORK/docs/doc.json"

# --- PostgreSQL: a throwaway cluster on a free port -------------------------------------------
PGPORT=$(free_port)
PGDATA_DIR=$WORK/pg
mkdir -p "$PGDATA_DIR"
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA_DIR"
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/log" -w \
    -o "-p $PGPORT -k $PGDATA_DIR -c listen_addresses=127.0.0.1 -c max_connections=100" start >/dev/null
PGURL="postgres://postgres@127.0.0.1:$PGPORT/postgres"

config() { # name db_url port cache_secs [extra [auth] lines] [extra [keys] lines]
    local dir=$WORK/$1
    mkdir -p "$dir"
    cat >"$dir/steelcut.toml" <<TOML
roles = ["auth", "resource"]
[server]
listen = "127.0.0.1:$3"
[log]
level = "info"
[database]
url = "$2"
pool_size = 8
[keys]
dir = "$dir/keys"
${6:-}
[auth]
issuer = "http://127.0.0.1:$3"
credential_cache_secs = $4
${5:-}
[resource]
[[resource.routes]]
path = "/api_v0.0.1"
file = "$WORK/docs/doc.json"
TOML
    echo "$dir/steelcut.toml"
}

start_daemon() { # config port -> sets DAEMON_PID
    "$BIN" serve --config "$1" 2>>"$WORK/daemon.log" &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    wait_ready "http://127.0.0.1:$2/readyz"
}

peak_rss_mib() { # pid
    awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"
}

add_clients() { # config n -> writes basic auth headers to $WORK/clients.<name>
    local cfg=$1 n=$2 out=$3
    : >"$out"
    for _ in $(seq 1 "$n"); do
        "$BIN" client add --config "$cfg" --name bench --resource api_v0.0.1 2>/dev/null |
            python3 -c 'import json,sys,base64; c=json.load(sys.stdin); print(base64.b64encode((c["client_id"]+":"+c["client_secret"]).encode()).decode())' >>"$out"
    done
}

token_lua() { # clients file -> lua script cycling through the clients
    # The requests are laid out once, when the script loads, not rebuilt in Lua (wrk.format)
    # for every request: the load generator shares the daemon's two cores, and its own work
    # should stay as small as it is for the plain GETs of the other scenarios.
    local lua=$WORK/token.$RANDOM.lua
    {
        echo 'local creds = {'
        sed 's/.*/  "&",/' "$1"
        echo '}'
        cat <<'LUA'
local reqs, i = {}, 0
for n, cred in ipairs(creds) do
  reqs[n] = wrk.format("POST", "/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. cred,
  }, "grant_type=client_credentials&resource=api_v0.0.1")
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
LUA
    } >"$lua"
    echo "$lua"
}

# Runs wrk and prints "rps p50_ms p99_ms errors".
run_wrk() { # conns duration url [script] [extra header]
    local args=(-t2 -c"$1" -d"$2"s --latency --timeout 10s)
    [ -n "${4:-}" ] && args+=(-s "$4")
    [ -n "${5:-}" ] && args+=(-H "$5")
    wrk "${args[@]}" "$3" >"$WORK/wrk.out" 2>&1 || true
    python3 - "$WORK/wrk.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    if not m: return float("nan")
    n, u = float(m.group(1)), m.group(2)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
p50 = re.search(r"^\s+50%\s+(\S+)", t, re.M)
p99 = re.search(r"^\s+99%\s+(\S+)", t, re.M)
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
print(f"{float(rps.group(1)) if rps else 0:.0f} {ms(p50.group(1)) if p50 else float('nan'):.2f} "
      f"{ms(p99.group(1)) if p99 else float('nan'):.2f} {errors}")
PY
}

ROWS=()
row() { ROWS+=("$*"); }

# --- baseline ----------------------------------------------------------------------------------
BPORT=$(free_port)
"$BASE" "127.0.0.1:$BPORT" "$WORK/docs/doc.json" 2>/dev/null &
BASE_PID=$!
PIDS+=("$BASE_PID")
wait_ready "http://127.0.0.1:$BPORT/"
echo "== (d) baseline" >&2
read -r B_RPS B_P50 B_P99 B_ERR < <(run_wrk "$CONNS" "$DURATION" "http://127.0.0.1:$BPORT/api_v0.0.1")
row "d baseline (hyper, no auth)|-|$B_RPS|$B_P50|$B_P99|$B_ERR|$(peak_rss_mib "$BASE_PID")|1.00|-"
BASELINES=("$B_RPS")

# The baseline keeps running: each ratio is to a baseline run made just before the scenario,
# because a shared machine's speed drifts over minutes (the first run is not enough).
rebase() {
    read -r B_RPS _ _ _ < <(run_wrk "$CONNS" "$DURATION" "http://127.0.0.1:$BPORT/api_v0.0.1")
    BASELINES+=("$B_RPS")
}
# "ratio|baseline req/s" for the last two columns.
ratio() { python3 -c "print(f'{$1/$B_RPS:.2f}|$B_RPS' if $B_RPS else 'n/a|-')"; }

# A fresh access token for the HTTP Basic credentials $1 from the daemon on port $2.
token_for() { # basic-credentials port
    curl -fsS -H "Authorization: Basic $1" -d grant_type=client_credentials "http://127.0.0.1:$2/token" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# Rows a (warm issuance) and c (resource reads) for the daemon on PORT, with the clients listed
# in CLIENTS; ALG, when given, names the rows and must be the alg of the tokens. Leaves LUA (the
# token script), CRED (the first client) and TOKEN (its token) for the scenarios that follow.
warm_and_reads() { # store alg clients port
    local store=$1 alg=$2 clients=$3 port=$4 name=$1
    [ -n "$alg" ] && name=$alg
    LUA=$(token_lua "$clients")
    # Warm: machine clients come back again and again; each has been seen once before.
    while read -r cred; do
        token_for "$cred" "$port" >/dev/null
    done <"$clients"
    rebase
    echo "== (a) warm issuance, $name" >&2
    read -r RPS P50 P99 ERR < <(run_wrk "$CONNS" "$DURATION" "http://127.0.0.1:$port/token" "$LUA")
    row "a warm issuance${alg:+, $alg}|$store|$RPS|$P50|$P99|$ERR|$(peak_rss_mib "$DAEMON_PID")|$(ratio "$RPS")"
    rebase
    echo "== (c) resource reads, $name" >&2
    CRED=$(head -1 "$clients")
    TOKEN=$(token_for "$CRED" "$port")
    if [ -n "$alg" ]; then
        local header_alg
        header_alg=$(python3 -c 'import base64,json,sys; h=sys.argv[1].split(".")[0]; print(json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))["alg"])' "$TOKEN")
        [ "$header_alg" = "$alg" ] || { echo "bench: expected an $alg token, got $header_alg" >&2; exit 1; }
    fi
    read -r RPS P50 P99 ERR < <(run_wrk "$CONNS" "$DURATION" "http://127.0.0.1:$port/api_v0.0.1" "" "Authorization: Bearer $TOKEN")
    row "c resource reads${alg:+, $alg}|$store|$RPS|$P50|$P99|$ERR|$(peak_rss_mib "$DAEMON_PID")|$(ratio "$RPS")"
}

# --- start to ready ----------------------------------------------------------------------------
SPORT=$(free_port)
SCFG=$(config startup "sqlite://$WORK/startup/steelcut.db" "$SPORT" 300)
"$BIN" keys generate --config "$SCFG" >/dev/null 2>&1
"$BIN" migrate --config "$SCFG" >/dev/null
# From exec to the first 200 on /readyz, polled every 2 ms; median of 5 starts.
STARTUP_MS=$(python3 - "$BIN" "$SCFG" "$SPORT" <<'PY'
import http.client, subprocess, sys, time
binary, config, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = []
for _ in range(5):
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "serve", "--config", config], stderr=subprocess.DEVNULL)
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.002)
    runs.append((time.monotonic() - t0) * 1000)
    p.terminate(); p.wait()
print(f"{sorted(runs)[2]:.0f}")
PY
)

for BACKEND in sqlite postgres; do
    PORT=$(free_port)
    if [ "$BACKEND" = sqlite ]; then
        URL="sqlite://$WORK/$BACKEND/steelcut.db"
    else
        as_pg psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE bench_$RANDOM$RANDOM" >/dev/null
        DB=$(as_pg psql -At -h 127.0.0.1 -p "$PGPORT" -U postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'bench_%' ORDER BY oid DESC LIMIT 1")
        URL="postgres://postgres@127.0.0.1:$PGPORT/$DB"
    fi
    CFG=$(config "$BACKEND" "$URL" "$PORT" 300)
    "$BIN" migrate --config "$CFG" >/dev/null
    add_clients "$CFG" 4 "$WORK/clients.$BACKEND"
    start_daemon "$CFG" "$PORT"
    warm_and_reads "$BACKEND" "" "$WORK/clients.$BACKEND" "$PORT"

    if [ "$BACKEND" = sqlite ]; then
        # The same two scenarios while 1,000 idle and 200 slowloris connections are held open
        # (each reopened as soon as the header-read timeout closes it).
        echo "== (f) reads and warm issuance with 1,000 idle + 200 slowloris connections held" >&2
        python3 "$ROOT/benches/hold.py" 127.0.0.1 "$PORT" --idle 1000 --slowloris 200 \
            --seconds "$((4 * DURATION + 8))" >"$WORK/hold.out" &
        HOLD=$!
        PIDS+=("$HOLD")
        python3 - "$PORT" <<'PY'
import sys, time, urllib.request
# Wait (bounded) until the connections are open: the daemon's gauge says so.
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
    line = [l for l in text.splitlines() if l.startswith('steelcut_connections_open{listener="main"}')]
    if line and float(line[0].split()[-1]) >= 1100:
        break
    time.sleep(0.2)
PY
        rebase
        read -r RPS P50 P99 ERR < <(run_wrk "$CONNS" "$DURATION" "http://127.0.0.1:$PORT/api_v0.0.1" "" "Authorization: Bearer $TOKEN")
        row "f resource reads, 1,000 idle + 200 slowloris held|$BACKEND|$RPS|$P50|$P99|$ERR|$(peak_rss_mib "$DAEMON_PID")|$(ratio "$RPS")"
        rebase
        read -r RPS P50 P99 ERR < <(run_wrk "$CONNS" "$DURATION" "http://127.0.0.1:$PORT/token" "$LUA")
        row "f warm issuance, 1,000 idle + 200 slowloris held|$BACKEND|$RPS|$P50|$P99|$ERR|$(peak_rss_mib "$DAEMON_PID")|$(ratio "$RPS")"
        wait "$HOLD" || true
        echo "   hold.py: $(cat "$WORK/hold.out")" >&2
    fi
    kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true

    # Cold: the credential cache is off, so every request pays a full argon2id verify.
    PORT=$(free_port)
    CCFG=$(config "$BACKEND-cold" "$URL" "$PORT" 0)
    rm -rf "$WORK/$BACKEND-cold/keys"
    cp -a "$WORK/$BACKEND/keys" "$WORK/$BACKEND-cold/keys" 2>/dev/null || true
    [ "$BACKEND" = sqlite ] && cp "$WORK/$BACKEND/steelcut.db" "$WORK/$BACKEND-cold/steelcut.db" 2>/dev/null || true
    sed -i "s|$WORK/$BACKEND/steelcut.db|$WORK/$BACKEND-cold/steelcut.db|" "$CCFG"
    start_daemon "$CCFG" "$PORT"
    echo "== (b) cold issuance, $BACKEND" >&2
    read -r RPS P50 P99 ERR < <(run_wrk "$CONNS" "$DURATION" "http://127.0.0.1:$PORT/token" "$LUA")
    row "b cold issuance|$BACKEND|$RPS|$P50|$P99|$ERR|$(peak_rss_mib "$DAEMON_PID")|-|-"

    if [ "$BACKEND" = sqlite ]; then
        # Cold issuance for clients imported from steelcut-oauth, whose hashes keep the
        # original's cost (m=65536 KiB, t=3, p=4): one client hashed at that cost.
        kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
        PORT=$(free_port)
        ICFG=$(config "$BACKEND-imported" "sqlite://$WORK/$BACKEND-imported/steelcut.db" "$PORT" 0 \
            $'[auth.argon2]\nmemory_kib = 65536\niterations = 3\nparallelism = 4')
        "$BIN" migrate --config "$ICFG" >/dev/null
        add_clients "$ICFG" 4 "$WORK/clients.imported"
        start_daemon "$ICFG" "$PORT"
        ILUA=$(token_lua "$WORK/clients.imported")
        echo "== (b) cold issuance, steelcut-oauth's hash cost" >&2
        read -r RPS P50 P99 ERR < <(run_wrk "$CONNS" "$DURATION" "http://127.0.0.1:$PORT/token" "$ILUA")
        row "b cold issuance, imported hash (m=65536,t=3,p=4)|$BACKEND|$RPS|$P50|$P99|$ERR|$(peak_rss_mib "$DAEMON_PID")|-|-"
    fi

    if [ "$BACKEND" = postgres ]; then
        # A token from this daemon (its issuer is its own address).
        TOKEN=$(token_for "$CRED" "$PORT")
        echo "== (e) mixed: cold flood + /livez and resource latency, $BACKEND" >&2
        wrk -t1 -c"$CONNS" -d"$((DURATION + 2))"s --timeout 10s -s "$LUA" "http://127.0.0.1:$PORT/token" >/dev/null 2>&1 &
        FLOOD=$!
        sleep 1
        read -r RPS P50 P99 ERR < <(run_wrk 4 "$DURATION" "http://127.0.0.1:$PORT/livez")
        row "e /livez during cold flood|$BACKEND|$RPS|$P50|$P99|$ERR|-|-|-"
        wait "$FLOOD" || true
        wrk -t1 -c"$CONNS" -d"$((DURATION + 2))"s --timeout 10s -s "$LUA" "http://127.0.0.1:$PORT/token" >/dev/null 2>&1 &
        FLOOD=$!
        sleep 1
        read -r RPS P50 P99 ERR < <(run_wrk 4 "$DURATION" "http://127.0.0.1:$PORT/api_v0.0.1" "" "Authorization: Bearer $TOKEN")
        row "e resource during cold flood|$BACKEND|$RPS|$P50|$P99|$ERR|$(peak_rss_mib "$DAEMON_PID")|-|-"
        wait "$FLOOD" || true
    fi
    kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
done

# Warm issuance and resource reads signed with ES256 and RS256 (RSA-3072, the default size),
# beside the EdDSA rows above: the SQLite clients, a fresh key directory whose first key is of
# that algorithm (so it signs at once).
for ALG in ES256 RS256; do
    PORT=$(free_port)
    ACFG=$(config "sqlite-$ALG" "sqlite://$WORK/sqlite/steelcut.db" "$PORT" 300 "" "signing_alg = \"$ALG\"")
    start_daemon "$ACFG" "$PORT"
    warm_and_reads sqlite "$ALG" "$WORK/clients.sqlite" "$PORT"
    kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
done

# What argon2 allows: cores / single-verify time (median of 20 verifies, default cost).
VERIFY_MS=$("$TARGET/release/examples/argon2-verify" 20)
ALLOWED=$(python3 -c "print(f'{$(nproc) * 1000 / $VERIFY_MS:.0f}')")
IMPORTED_MS=$("$TARGET/release/examples/argon2-verify" 10 65536 3 4)
IMPORTED_ALLOWED=$(python3 -c "print(f'{$(nproc) * 1000 / $IMPORTED_MS:.0f}')")
{
    echo "steelcutd benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    echo "wrk -t2 -c$CONNS -d${DURATION}s over loopback; start to ready (SQLite, one key, one route): ${STARTUP_MS} ms"
    echo "argon2id verify (m=19456 KiB, t=2, p=1): ${VERIFY_MS} ms, so cold issuance can reach at most ${ALLOWED}/s on $(nproc) cores"
    echo "argon2id verify of an imported steelcut-oauth hash (m=65536 KiB, t=3, p=4): ${IMPORTED_MS} ms, at most ${IMPORTED_ALLOWED}/s"
    echo "daemons log at info: one line per request, as in production"
    echo "baseline runs over the benchmark (req/s): ${BASELINES[*]}"
    echo
    echo "| scenario | store | req/s | p50 ms | p99 ms | errors | peak RSS MiB | ratio to baseline | baseline req/s, run just before |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for r in "${ROWS[@]}"; do echo "| ${r//|/ | } |"; done
} | tee "${OUT:-/dev/null}"
[ "$SMOKE" = 1 ] && echo "bench smoke run finished" >&2
exit 0
