#!/usr/bin/env bash
# Proves the daemon's HTTP endpoint with real outside tools:
#   1. `promtool check metrics` (Debian's prometheus package) accepts /metrics, with the
#      files backend and with the PostgreSQL backend (a private cluster from Debian's
#      postgresql package, which .ci/run installs; its leader and lease-epoch gauges), and
#      `promtool check config` the scrape config docs/monitoring.md shows (with the
#      `authorization: credentials_file:` that the endpoint's API token needs);
#   2. headless Chromium (Debian's chromium package) loads the status page, and the DOM
#      it renders shows one row per server with the right outcome classes and reasons;
#      a screenshot is saved to target/status-page.png.
# The daemon runs (the real binary) against the simulated Jellyfin (`simulate` with
# config/simulate-scenario.toml), with four servers due in a few seconds.
#
# usage: tests/observability.sh   (as root for the apt installs, from anywhere in the repo)
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh # free_port, wait_until

fail() { echo "tests/observability.sh: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  step "installing ${need[*]} (Debian packages)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null ||
    fail "could not install ${need[*]} with apt-get."
fi

step "cargo build --locked"
cargo build --locked --quiet
bin=${CARGO_TARGET_DIR:-target}/debug/jellyfin-export-scheduler

sim_port=$(free_port)
http_port=$(free_port)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" simulate --listen "127.0.0.1:$sim_port" --scenario config/simulate-scenario.toml >"$work/sim.log" 2>&1 &
pids+=($!)

# Every server due 3 s from now (UTC), once a day.
due=$(date -u -d '+3 seconds' '+%-S %-M %-H')
cat >"$work/config.toml" <<EOF
[daemon]
state_dir = "$work/state"
listen = "127.0.0.1:$http_port"
[defaults]
schedule = "$due * * *"
timezone = "UTC"
poll_interval = "500ms"
retries = 0
EOF
for pair in living-room:livingroom-key-00000000000000000000 basement:basement-key-0000000000000000000000 \
            attic:attic-key-000000000000000000000000 garage:garage-key-00000000000000000000000; do
  name=${pair%%:*}; key=${pair#*:}
  printf '\n[[servers]]\nname = "%s"\nurl = "http://127.0.0.1:%s/s/%s"\napi_key = "%s"\n' "$name" "$sim_port" "$name" "$key" >>"$work/config.toml"
done
chmod 600 "$work/config.toml"

"$bin" run --config "$work/config.toml" 2>"$work/daemon.log" &
pids+=($!)

step "waiting (at most 60 s) for the four runs to be recorded"
recorded() { n=$( (cat "$work"/state/history/*.jsonl 2>/dev/null || true) | wc -l); ((n >= 4)); }
wait_until 60 recorded || { cat "$work/daemon.log" >&2; fail "only $n of 4 runs were recorded within 60 s."; }

step "promtool check metrics"
curl -fsS "http://127.0.0.1:$http_port/metrics" >"$work/metrics.txt" || fail "GET /metrics failed."
promtool check metrics <"$work/metrics.txt" || fail "promtool rejected /metrics (above)."
grep -q 'jellyfin_export_runs_total{server="basement",outcome="failed"} 1' "$work/metrics.txt" ||
  fail "/metrics does not count basement's failed run."
echo "promtool: /metrics accepted ($(grep -vc '^#' "$work/metrics.txt") samples)"

step "promtool check metrics on the PostgreSQL backend (a private cluster, one instance leading)"
# Debian's server binaries (.ci/run installs the package postgresql), off PATH; as root,
# initdb and the server run as postgres (initdb refuses root), in a folder it can reach.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -n $pg_bin && -x $pg_bin/initdb ]] ||
  fail "no PostgreSQL server binaries in /usr/lib/postgresql/<version>/bin (apt-get install postgresql; .ci/run does)."
pg_dir=$(mktemp -d)
chmod 777 "$pg_dir"
as_pg=()
((EUID == 0)) && as_pg=(runuser -u postgres --)
pg_port=$(free_port)
pg_stop() { "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pg_dir"; }
trap 'cleanup; pg_stop' EXIT
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres -N --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1 ||
  { cat "$pg_dir/initdb.log" >&2; fail "initdb failed (above)."; }
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
  { cat "$pg_dir/server.log" >&2; fail "PostgreSQL did not start (its log is above)."; }
pg_http_port=$(free_port)
sed -e "s#^state_dir = .*#state_dir = \"$work/pg-state\"\nbackend = \"postgres\"\ndatabase_url = \"postgresql://postgres@127.0.0.1:$pg_port/postgres\"\nlease_ttl = \"2s\"\ninstance_name = \"observability\"#" \
  -e "s#^listen = .*#listen = \"127.0.0.1:$pg_http_port\"#" "$work/config.toml" >"$work/pg-config.toml"
chmod 600 "$work/pg-config.toml"
"$bin" run --config "$work/pg-config.toml" 2>"$work/pg-daemon.log" &
pids+=($!)
leads() { curl -fsS "http://127.0.0.1:$pg_http_port/metrics" >"$work/pg-metrics.txt" 2>/dev/null && grep -q '^jellyfin_export_leader 1$' "$work/pg-metrics.txt"; }
wait_until 30 leads || { cat "$work/pg-daemon.log" >&2; fail "the instance on PostgreSQL did not lead within 30 s (no jellyfin_export_leader 1 in /metrics)."; }
promtool check metrics <"$work/pg-metrics.txt" || fail "promtool rejected /metrics on the PostgreSQL backend (above)."
grep -q '^jellyfin_export_lease_epoch [1-9]' "$work/pg-metrics.txt" || fail "/metrics on PostgreSQL has no lease epoch."
echo "promtool: /metrics on PostgreSQL accepted ($(grep -vc '^#' "$work/pg-metrics.txt") samples, leader 1)"

step "promtool check config: the scrape config of docs/monitoring.md"
awk '/^### Prometheus scrape config/ { section = 1 }
     section && /^```yaml/ { inside = 1; next }
     inside && /^```/ { exit }
     inside { print }' docs/monitoring.md >"$work/prometheus.yml"
token_path=$(sed -n 's/^ *credentials_file: *//p' "$work/prometheus.yml")
[[ -n $token_path ]] || fail "docs/monitoring.md's scrape config has no credentials_file."
# The token file where the example says, moved into the work folder.
printf '%s\n' 0123456789abcdef0123456789abcdef >"$work/prometheus.token"
sed -i "s#credentials_file: .*#credentials_file: $work/prometheus.token#" "$work/prometheus.yml"
promtool check config "$work/prometheus.yml" || fail "promtool rejected the scrape config of docs/monitoring.md (above)."

chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --user-data-dir="$work/chrome")

step "headless Chromium: the status page's rendered DOM"
"${chrome[@]}" --dump-dom "http://127.0.0.1:$http_port/" >"$work/dom.html" 2>"$work/chrome.log" ||
  { cat "$work/chrome.log" >&2; fail "Chromium could not load the status page."; }
check() { grep -q -- "$1" "$work/dom.html" || fail "the page does not show $2."; }
for name in living-room basement attic garage; do
  check "<tr data-server=\"$name\">" "a row for $name"
done
rows=$(grep -o '<tr data-server=' "$work/dom.html" | wc -l)
((rows == 4)) || fail "the page shows $rows rows, not 4."
# Each row's last outcome, with its colour class.
row() { grep -o "<tr data-server=\"$1\">.*</tr>" "$work/dom.html" | head -1; }
row living-room | grep -q 'badge ok">completed' || fail "living-room is not shown as completed (green)."
row basement | grep -q 'badge bad">failed' || fail "basement is not shown as failed (red)."
row attic | grep -q 'badge bad">failed' || fail "attic is not shown as failed (red)."
row garage | grep -q 'badge quiet">skipped' || fail "garage is not shown as skipped (grey)."
check "No space left on device" "basement's reason"
check "Mode = Import" "garage's reason"
check 'http-equiv="refresh"' "a self-refresh"
echo "chromium: 4 rows with the right outcomes and reasons"

step "screenshot"
mkdir -p target
"${chrome[@]}" --window-size=1400,520 --screenshot="$PWD/target/status-page.png" "http://127.0.0.1:$http_port/" >/dev/null 2>&1 ||
  fail "Chromium could not take a screenshot."
[[ -s target/status-page.png ]] || fail "the screenshot is empty."
echo "screenshot: target/status-page.png ($(stat -c %s target/status-page.png) bytes)"

echo "PASS: promtool accepts /metrics and the documented scrape config; Chromium shows the status page with every server and outcome"
