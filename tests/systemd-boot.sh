#!/usr/bin/env bash
# Proves the README's "Install with systemd" under a real systemd: Debian's systemd booted as
# PID 1 in a podman container (host network), the install steps run as the README writes
# them, against the simulated Jellyfin (`jellyfin-export-scheduler simulate`) on a free
# loopback port of the host. It checks:
#   - `systemctl is-system-running` reaches `running`;
#   - the unit becomes active with its status line; the daemon raised its open-file
#     limit to the hard one (the unit's seccomp filter allows it) and `healthcheck` says so;
#   - a scheduled run is recorded `completed` in the state directory, in a file owned by the
#     service's dynamic user, mode 0600;
#   - `doctor` (README step 3) passes against the simulator, read-only;
#   - `systemctl reload` after a valid edit succeeds and the change shows in the status
#     line; after an invalid edit it fails, with the problem in the journal, and the daemon
#     runs on (same pid, old config); a saved edit applies by itself (watch_config), with
#     no reload command;
#   - `history` as root prints the run;
#   - `systemctl restart` during a run leaves exactly one record of that run;
#   - with `log_format = "json"`, every line the service writes to the journal parses;
#   - the journal holds the logs; `systemctl stop` ends with Result=success.
# A failure names its step and shows the unit's last journal lines.
#
# The README's commands are run from its text: each one is looked up verbatim in the
# README's install section before it runs, so the two cannot drift apart. Where a person
# types into an editor (sudoedit, `systemctl edit`), the editor (SUDO_EDITOR /
# SYSTEMD_EDITOR) is a script that writes the text the README says to write into the file
# it is given, and `systemctl edit` gets a tty from script(1), as it insists on one.
#
# The root file system (debootstrap --variant=minbase with systemd, from the Debian mirror
# apt already uses) is built once and cached in /var/cache/jes-systemd-rootfs, keyed by
# what it contains; podman is set up by ../shared/tools/container-stand-ins --setup-only.
#
# usage: tests/systemd-boot.sh          (as root, from anywhere in the repo)
#        JES_BIN=path tests/systemd-boot.sh   (install this binary instead of building
#                                               target/release with cargo build --release)
#        JES_BOOT_SUITE=trixie tests/systemd-boot.sh   (another Debian suite; trixie's
#            systemd 257 boots here, but on this host it cannot set up the unit's mount
#            namespace: 226/NAMESPACE, "Failed to set up mount namespacing: Operation not
#            supported", also without seccomp; so CI boots bookworm's 252 only)
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh # free_port, wait_until
started_at=$SECONDS

suite=${JES_BOOT_SUITE:-bookworm}
packages=systemd,systemd-sysv,dbus,ca-certificates,sudo
cache=${JES_ROOTFS_CACHE:-/var/cache/jes-systemd-rootfs}
unit=jellyfin-export-scheduler
ctr=jes-boot-$$
state=/var/lib/jellyfin-export-scheduler
config=/etc/jellyfin-export-scheduler/config.toml
sim_key=living-room-key-000000000000000000
# What the daemon's user id must be within: systemd's range for DynamicUser=.
dynamic_min=61184 dynamic_max=65519

step_name="setup"
step() { step_name=$*; echo "== $*"; }
work=$(mktemp -d)
sim_pid=
cleanup() {
  podman rm -f -t 0 "$ctr" >/dev/null 2>&1 || true
  [[ -n $sim_pid ]] && kill "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Runs a command in the booted container.
in_ctr() { podman exec "$ctr" "$@"; }

fail() {
  echo "tests/systemd-boot.sh: FAIL at step \"$step_name\": $*" >&2
  if podman container exists "$ctr" 2>/dev/null; then
    echo "--- systemctl status $unit" >&2
    in_ctr systemctl status --no-pager "$unit" >&2 2>&1 || true
    echo "--- journalctl -u $unit (last 30 lines)" >&2
    in_ctr journalctl -u "$unit" -n 30 --no-pager >&2 2>&1 || true
  fi
  exit 1
}

# --- the README's install section, and running its commands ----------------------------
readme_section=$work/install.md
sed -n '/^## Install with systemd/,/^## /p' README.md >"$readme_section"
[[ -s $readme_section ]] || fail "README.md has no \"## Install with systemd\" section."

# Fails unless the README's install section holds TEXT verbatim (a command continued with
# a backslash counts as one line; runs of blanks as one).
readme_says() {
  python3 -c '
import re, sys
flat = lambda s: re.sub(r"[ \t]+", " ", re.sub(r"\\\n\s*", " ", s))
sys.exit(0 if flat(sys.argv[1]) in flat(open(sys.argv[2]).read()) else 1)' "$1" "$readme_section" ||
    fail "the README's install section no longer says: $1 (update the README or this test)"
}

# Runs a README command line (as written there) in the container, as root, from /src (the
# repository's files the install needs).
readme_run() {
  readme_says "$1"
  echo "  \$ $1"
  podman exec -w /src "$ctr" sh -c "$1" || fail "the README's command failed: $1"
}

# The unit's journal, as text. (Read whole, then searched: `journalctl | grep -q` would
# fail under pipefail whenever grep stops reading early.)
journal() { in_ctr journalctl -u "$unit" --no-pager -o cat "$@"; }
journal_has() { local all; all=$(journal); grep -q -- "$1" <<<"$all"; }
prop() { in_ctr systemctl show -p "$1" --value "$unit"; }

# ---- 0. podman, the root file system, the binary ----------------------------------------
step "podman (../shared/tools/container-stand-ins --setup-only)"
[[ -f ../shared/tools/container-stand-ins ]] ||
  fail "../shared/tools/container-stand-ins is missing (the repo's parent must hold shared/)."
bash ../shared/tools/container-stand-ins --setup-only

step "root file system: Debian $suite with systemd"
recipe="debootstrap --variant=minbase --include=$packages $suite (recipe 1)"
key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
rootfs=$cache/$suite-$key
image=localhost/jes-systemd-$suite:$key
if [[ ! -x $rootfs/lib/systemd/systemd ]]; then
  mirror=$(bash ../shared/tools/container-stand-ins --debian-mirror)
  echo "building $rootfs ($recipe); cached for later runs"
  built=$SECONDS
  mkdir -p "$cache"
  rm -rf "$rootfs.tmp"
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs.tmp" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap failed."; }
  mv "$rootfs.tmp" "$rootfs"
  echo "debootstrap took $((SECONDS - built)) s"
fi
if ! podman image exists "$image"; then
  imported=$SECONDS
  tar -C "$rootfs" -c . | podman import -q - "$image" >/dev/null || fail "podman import of $rootfs failed."
  echo "podman import took $((SECONDS - imported)) s"
fi
echo "image $image ($(du -sh "$rootfs" | cut -f1) root file system)"

step "binary (README step 1: cargo build --release --locked)"
readme_says "cargo build --release --locked"
if [[ -n ${JES_BIN:-} ]]; then
  bin=$JES_BIN
else
  built=$SECONDS
  cargo build --release --locked --quiet || fail "cargo build --release failed."
  echo "cargo build --release took $((SECONDS - built)) s"
  bin=${CARGO_TARGET_DIR:-target}/release/jellyfin-export-scheduler
fi
[[ -x $bin ]] || fail "$bin is not an executable file."
# What the install steps need from the repository, where they expect it.
mkdir -p "$work/src/target/release" "$work/src/systemd" "$work/src/config"
cp "$bin" "$work/src/target/release/jellyfin-export-scheduler"
cp systemd/jellyfin-export-scheduler.service "$work/src/systemd/"
cp config/minimal.toml "$work/src/config/"

# ---- 1. the simulated Jellyfin on the host ---------------------------------------------
step "simulated Jellyfin on the host"
sim_port=$(free_port)
cat >"$work/scenario.toml" <<EOF
[[servers]]
name = "living-room"
api_key = "$sim_key"
run_length = "8s"
EOF
"$bin" simulate --listen "127.0.0.1:$sim_port" --scenario "$work/scenario.toml" >"$work/sim.log" 2>&1 &
sim_pid=$!
sim_up() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$sim_port" 2>/dev/null; }
wait_until 30 sim_up || { cat "$work/sim.log" >&2; fail "the simulator did not listen on 127.0.0.1:$sim_port within 30 s."; }
echo "simulator on 127.0.0.1:$sim_port"

# ---- 2. boot ----------------------------------------------------------------------------
step "boot systemd as PID 1 (podman run --systemd=always, host network)"
podman run -d --name "$ctr" --systemd=always --network host \
  -v "$work/src:/src:ro" "$image" /lib/systemd/systemd >/dev/null || fail "podman run failed."
in_ctr /lib/systemd/systemd --version | head -1
booted() { [[ $(in_ctr systemctl is-system-running 2>/dev/null) =~ ^(running|degraded)$ ]]; }
wait_until 90 booted || fail "systemctl is-system-running did not settle within 90 s: $(in_ctr systemctl is-system-running 2>&1)."
system=$(in_ctr systemctl is-system-running || true)
[[ $system == running ]] || fail "the system is $system, not running; failed units: $(in_ctr systemctl --failed --no-legend --no-pager 2>&1)"
echo "is-system-running: running"
boot_steps_at=$SECONDS

# ---- 3. install, as the README says ------------------------------------------------------
# The "editor": writes /tmp/edit-text into the file it is given (its last argument; systemd
# 254+ passes a +LINE hint first).
printf '#!/bin/sh\nfor f; do :; done\ncat /tmp/edit-text >"$f"\n' >"$work/editor"
chmod 0755 "$work/editor"
podman cp "$work/editor" "$ctr:/usr/local/sbin/test-editor"

step "README step 1: install the binary"
readme_run "sudo install -m 0755 target/release/jellyfin-export-scheduler /usr/local/bin/"

step "README step 2: unit and config"
readme_run "sudo install -m 0644 systemd/jellyfin-export-scheduler.service /etc/systemd/system/"
readme_run "sudo install -d -m 0755 /etc/jellyfin-export-scheduler"
readme_run "sudo install -m 0644 config/minimal.toml /etc/jellyfin-export-scheduler/config.toml"
health_port=$(free_port)
# The file as a person leaves it after sudoedit: config/minimal.toml's one server with its
# url and timezone set (no state_dir: the unit's $STATE_DIRECTORY is used), the key as a
# credential; for the test, a schedule every 15 s, the log format and a free endpoint port.
write_config() { # LOG_FORMAT EXTRA_SERVERS
  cat >"$work/src-config.toml" <<EOF
[daemon]
log_format = "$1"
listen = "127.0.0.1:$health_port"

[[servers]]
name = "living-room"
url = "http://127.0.0.1:$sim_port/s/living-room"
api_key_file = "\${CREDENTIALS_DIRECTORY}/living-room"
schedule = "*/15 * * * * *"
timezone = "UTC"
poll_interval = "1s"
$2
EOF
  podman cp "$work/src-config.toml" "$ctr:/tmp/edit-text"
  readme_says "sudoedit $config"
  in_ctr sh -c "SUDO_EDITOR=/usr/local/sbin/test-editor sudoedit $config" || fail "sudoedit $config failed."
}
write_config text ""

step "README step 3: the API key as a credential"
readme_run "sudo install -d -m 0700 /etc/jellyfin-export-scheduler/keys"
readme_says "sudo sh -c 'umask 077; printf \"%s\\n\" \"YOUR-API-KEY\" > /etc/jellyfin-export-scheduler/keys/living-room'"
in_ctr sh -c "sudo sh -c 'umask 077; printf \"%s\\n\" \"$sim_key\" > /etc/jellyfin-export-scheduler/keys/living-room'" ||
  fail "writing the key file failed."
dropin="[Service]
LoadCredential=living-room:/etc/jellyfin-export-scheduler/keys/living-room"
readme_says "LoadCredential=living-room:/etc/jellyfin-export-scheduler/keys/living-room"
readme_says "sudo systemctl edit jellyfin-export-scheduler"
printf '%s\n' "$dropin" >"$work/dropin"
podman cp "$work/dropin" "$ctr:/tmp/edit-text"
in_ctr script -qec "sudo SYSTEMD_EDITOR=/usr/local/sbin/test-editor systemctl edit jellyfin-export-scheduler" /dev/null >/dev/null ||
  fail "systemctl edit failed."
in_ctr grep -q '^LoadCredential=living-room:' /etc/systemd/system/$unit.service.d/override.conf ||
  fail "systemctl edit left no LoadCredential= drop-in."
readme_run "sudo CREDENTIALS_DIRECTORY=/etc/jellyfin-export-scheduler/keys jellyfin-export-scheduler check --config /etc/jellyfin-export-scheduler/config.toml"
# Without the credentials, as the README says, check names the key it cannot read here.
if out=$(in_ctr jellyfin-export-scheduler check --config "$config" 2>&1); then
  fail "check passed without \$CREDENTIALS_DIRECTORY: $out"
fi
grep -q '1 secret cannot be read here (servers\[0\].api_key_file)' <<<"$out" ||
  fail "check without the credentials does not name the key it cannot read: $out"
readme_run "sudo jellyfin-export-scheduler check --no-secrets --config /etc/jellyfin-export-scheduler/config.toml"
doctor_cmd="sudo CREDENTIALS_DIRECTORY=/etc/jellyfin-export-scheduler/keys jellyfin-export-scheduler doctor --config /etc/jellyfin-export-scheduler/config.toml"
readme_says "$doctor_cmd"
echo "  \$ $doctor_cmd"
out=$(podman exec -w /src "$ctr" sh -c "$doctor_cmd" 2>&1) || { echo "$out" >&2; fail "the README's doctor found a failure (above)."; }
for want in "✓ address" "✓ key" "✓ plugin" "✓ task" "✓ mode" "✓ last_export" "✓ state_dir"; do
  grep -q -- "$want" <<<"$out" || { echo "$out" >&2; fail "doctor's report has no \"$want\" line (above)."; }
done
grep -q "1 server checked: .* 0 failed" <<<"$out" || { echo "$out" >&2; fail "doctor's summary is not \"1 server checked: … 0 failed\"."; }
echo "doctor: $(tail -1 <<<"$out")"

step "README step 4: start"
readme_run "sudo systemctl daemon-reload"
readme_run "sudo systemctl enable --now jellyfin-export-scheduler"
readme_run "systemctl status jellyfin-export-scheduler"
[[ $(prop ActiveState) == active ]] || fail "the unit is $(prop ActiveState), not active."
status_line=$(prop StatusText)
[[ $status_line == "1 server, next export living-room at "* ]] ||
  fail "the status line is \"$status_line\", not \"1 server, next export living-room at …\"."
echo "active; status line: $status_line"
main_pid=$(prop MainPID)

step "the endpoint: open-file limit raised to the hard one, healthcheck answers"
read -r soft hard < <(in_ctr awk '/^Max open files/ { print $4, $5 }' "/proc/$main_pid/limits")
[[ -n $soft && $soft == "$hard" ]] ||
  fail "the daemon's open-file limit is soft $soft, hard $hard: it was not raised to the hard one."
out=$(in_ctr jellyfin-export-scheduler healthcheck --config "$config" 2>&1) ||
  fail "healthcheck failed under the unit: $out"
echo "open files: $soft (soft = hard); $out"

# ---- 4. a scheduled run, on disk -----------------------------------------------------------
step "a scheduled run recorded completed, owned by the dynamic user, mode 0600"
history=$state/history/living-room.jsonl
completed() { in_ctr grep -q '"trigger":"schedule".*"outcome":"completed"' "$history" 2>/dev/null; }
wait_until 60 completed || fail "no completed scheduled run in $history within 60 s."
uid=$(in_ctr awk '/^Uid:/ { print $2 }' "/proc/$main_pid/status")
read -r owner mode < <(in_ctr stat -L -c '%u %a' "$history")
((uid >= dynamic_min && uid <= dynamic_max)) || fail "the daemon runs as uid $uid, not a DynamicUser= uid."
[[ $owner == "$uid" && $mode == 600 ]] || fail "$history is owned by $owner with mode $mode, not by the daemon's uid $uid with 600."
[[ $(in_ctr readlink "$state") == private/* ]] || fail "$state is not systemd's symlink into /var/lib/private."
echo "completed run in $history (uid $uid, mode $mode; $(in_ctr readlink -f "$history"))"

step "README day two: history as root"
history_cmd="sudo jellyfin-export-scheduler history --config /etc/jellyfin-export-scheduler/config.toml"
readme_says "$history_cmd"
out=$(in_ctr sh -c "$history_cmd" 2>&1) || fail "history failed: $out"
grep -q 'completed' <<<"$out" || fail "history does not show the completed run: $out"
echo "$out" | head -3

# ---- 5. reload ----------------------------------------------------------------------------
step "README day two: reload after a valid edit"
write_config text '
[[servers]]
name = "cabin"
url = "http://127.0.0.1:'"$sim_port"'/s/living-room"
api_key_file = "${CREDENTIALS_DIRECTORY}/living-room"
schedule = "0 30 3 * * *"
timezone = "UTC"'
readme_run "sudo systemctl reload jellyfin-export-scheduler"
two_servers() { [[ $(prop StatusText) == "2 servers"* ]]; }
wait_until 10 two_servers || fail "after the reload the status line is \"$(prop StatusText)\", not \"2 servers…\"."
# The watcher may have applied the saved file before the reload command's SIGHUP: either
# way the daemon logged the change, and the command says the file was applied.
journal_has 'applied by the daemon' || fail "the journal does not say the reload was applied."
journal_has 'reloaded: 1 added, 0 removed, 0 changed' || fail "the journal does not hold the reload's summary."
echo "status line: $(prop StatusText)"

step "README day two: reload after an invalid edit fails, the daemon runs on"
before=$(prop StatusText)
write_config text '
[[servers]]
name = "cabin"
url = "http://127.0.0.1:'"$sim_port"'/s/living-room"
api_key_file = "${CREDENTIALS_DIRECTORY}/living-room"
schedule = "0 61 3 * * *"'
if in_ctr systemctl reload "$unit" 2>/dev/null; then fail "systemctl reload succeeded with an invalid config."; fi
journal_has 'servers\[1\].schedule: invalid cron expression' || fail "the journal does not hold the config's problem."
[[ $(prop ActiveState) == active && $(prop MainPID) == "$main_pid" ]] ||
  fail "the daemon did not keep running (state $(prop ActiveState), pid $(prop MainPID), was $main_pid)."
[[ $(prop StatusText) == "2 servers"* ]] || fail "the status line changed to \"$(prop StatusText)\" (was \"$before\")."
echo "reload failed as it should; still active, pid $main_pid, \"$(prop StatusText)\""

step "README day two: a saved edit applies by itself (watch_config)"
readme_says "The daemon applies the saved file by itself"
write_config text ""
one_server() { [[ $(prop StatusText) == "1 server,"* ]]; }
wait_until 20 one_server || fail "20 s after a saved edit without a reload command the status line is \"$(prop StatusText)\", not \"1 server,…\"."
journal_has 'config file changed: reloading' || fail "the journal does not say the watcher reloaded the file."
journal_has 'reloaded: 0 added, 1 removed, 0 changed' || fail "the journal does not hold the watcher's reload summary."
[[ $(prop MainPID) == "$main_pid" ]] || fail "the daemon restarted (pid $(prop MainPID), was $main_pid)."
echo "applied by the watcher: \"$(prop StatusText)\""
readme_run "sudo systemctl reload jellyfin-export-scheduler"

# ---- 6. restart during a run ---------------------------------------------------------------
step "restart during a run leaves exactly one record of it"
marker=$state/inflight/living-room.json
in_run() { in_ctr test -s "$marker"; }
wait_until 30 in_run || fail "no run was in progress within 30 s."
run_id=$(in_ctr sh -c "cat $marker" | python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
echo "run $run_id in progress"
readme_says "sudo systemctl restart jellyfin-export-scheduler"
in_ctr systemctl restart "$unit" || fail "systemctl restart failed."
# Once a run after it is recorded, the interrupted run's own record is written too.
records_of() { in_ctr grep -c "\"run_id\":\"$1\"" "$history" || true; }
later_run() {
  in_ctr cat "$history" | python3 -c '
import json, sys
ids = [json.loads(l)["run_id"] for l in sys.stdin if l.strip()]
sys.exit(0 if sys.argv[1] in ids and ids.index(sys.argv[1]) < len(ids) - 1 else 1)' "$run_id"
}
wait_until 60 later_run || fail "no run was recorded after run $run_id within 60 s of the restart."
n=$(records_of "$run_id")
[[ $n == 1 ]] || fail "run $run_id has $n records, not 1."
echo "run $run_id: 1 record ($(in_ctr grep "\"run_id\":\"$run_id\"" "$history" | python3 -c 'import json,sys; print(json.load(sys.stdin)["outcome"])'))"

# ---- 7. JSON logs ---------------------------------------------------------------------------
step "log_format = \"json\": every line the service writes parses"
write_config json ""
in_ctr systemctl restart "$unit" || fail "systemctl restart failed."
invocation=$(prop InvocationID)
json_lines() { in_ctr journalctl --no-pager -o cat "_SYSTEMD_INVOCATION_ID=$invocation"; }
run_done() { local all; all=$(json_lines); grep -q '"message":"run finished"' <<<"$all"; }
wait_until 60 run_done || fail "no \"run finished\" JSON line within 60 s."
readme_run "sudo systemctl reload jellyfin-export-scheduler"
json_lines >"$work/json.log"
python3 - "$work/json.log" <<'EOF' || fail "a line of the service's journal is not JSON (above)."
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
for n, line in enumerate(lines, 1):
    try:
        v = json.loads(line)
    except ValueError:
        sys.exit(f"line {n} is not JSON: {line.strip()}")
    if not isinstance(v, dict) or "message" not in v:
        sys.exit(f"line {n} is not a log object: {line.strip()}")
print(f"{len(lines)} lines, each a JSON object")
EOF
grep -q 'applied by the daemon' "$work/json.log" || fail "the reload command's line is not among the JSON lines."

# ---- 8. the journal, stop -------------------------------------------------------------------
step "README day two: the journal holds the logs"
readme_says "journalctl -u jellyfin-export-scheduler"
for want in "schedules armed" "run started" "run finished" "SIGHUP: reloading"; do
  journal_has "$want" || fail "the journal has no \"$want\" line."
done
echo "journal: $(journal | wc -l) lines of the unit"

step "systemctl stop ends with Result=success"
in_ctr systemctl stop "$unit" || fail "systemctl stop failed."
result=$(prop Result) code=$(prop ExecMainStatus)
[[ $result == success && $code == 0 ]] || fail "stop ended with Result=$result, exit status $code."
echo "stopped: Result=$result, exit status $code"

echo "PASS: $(in_ctr /lib/systemd/systemd --version | head -1) in Debian $suite: install, doctor, run, reload, watched edit, history, restart, JSON logs, stop (steps $((SECONDS - boot_steps_at)) s, all $((SECONDS - started_at)) s)"
