#!/bin/bash
# pve-runners template: run exactly one GitHub Actions job in this container, then power it off.
# Installed as /usr/local/lib/pve-runners/runner-once and started by pve-runner.service.
#
# 1. A marker says a job already ran (the container was restarted): power off, nothing else.
# 2. Wait for the single-use JIT runner config, whichever comes first:
#      - the file /run/pve-runners/jitconfig, written by `pct exec` (systemd/deliver-jit on the host);
#      - ACTIONS_RUNNER_INPUT_JITCONFIG in PID 1's environment (PVE 9.1+ CT option `env`, which
#        lxc applies to init only: systemd never passes it on to services, so read /proc/1/environ;
#        the listener removes the option from the CT config right after the start, init keeps it).
# 3. Read it, delete the file, write the marker, then run the runner once as the runner user with the
#    config in ACTIONS_RUNNER_INPUT_JITCONFIG (the runner reads its inputs from ACTIONS_RUNNER_INPUT_*
#    and removes the variable from its own environment). Never on argv, never logged.
# 4. Power the container off, whatever the runner's exit status. The host destroys it.
#
# Every path and command can be overridden for tests:
#   PVE_RUNNERS_JIT_FILE       /run/pve-runners/jitconfig
#   PVE_RUNNERS_INIT_ENVIRON   /proc/1/environ
#   PVE_RUNNERS_RUNNER_DIR     /opt/actions-runner   (its run.sh is started)
#   PVE_RUNNERS_RUNNER_USER    runner
#   PVE_RUNNERS_RUNUSER        runuser               (called as: runuser -u USER -- RUNNER_DIR/run.sh)
#   PVE_RUNNERS_MARKER         /var/lib/pve-runners/job-started
#   PVE_RUNNERS_POWEROFF       "systemctl poweroff"  (split on spaces)
#   PVE_RUNNERS_WAIT_TIMEOUT   1800 seconds without a config, then power off (0 = wait for ever)
#   PVE_RUNNERS_POLL_INTERVAL  1 second between looks (fractions allowed)
set -uo pipefail
umask 077
export LC_ALL=C

jit_file="${PVE_RUNNERS_JIT_FILE:-/run/pve-runners/jitconfig}"
init_environ="${PVE_RUNNERS_INIT_ENVIRON:-/proc/1/environ}"
runner_dir="${PVE_RUNNERS_RUNNER_DIR:-/opt/actions-runner}"
runner_user="${PVE_RUNNERS_RUNNER_USER:-runner}"
runuser_cmd="${PVE_RUNNERS_RUNUSER:-runuser}"
marker="${PVE_RUNNERS_MARKER:-/var/lib/pve-runners/job-started}"
read -r -a poweroff_cmd <<<"${PVE_RUNNERS_POWEROFF:-systemctl poweroff}"
wait_timeout="${PVE_RUNNERS_WAIT_TIMEOUT:-1800}"
poll="${PVE_RUNNERS_POLL_INTERVAL:-1}"
var=ACTIONS_RUNNER_INPUT_JITCONFIG

log() { echo "runner-once: $*" >&2; }

powered_off=0
# shellcheck disable=SC2317 # called from the EXIT trap
power_off() {
  ((powered_off)) && return 0
  powered_off=1
  log "powering the container off"
  "${poweroff_cmd[@]}" || log "power off failed (exit $?)"
}
# Whatever happens from here on (an error, the runner crashing), the container goes down. Only a
# stop from outside (SIGTERM: someone stopped the unit, or the container is already shutting down)
# leaves it as it is.
trap power_off EXIT
trap 'trap - EXIT; log "stopped from outside"; exit 143' TERM INT

# Prints the config from PID 1's environment if it is there (NUL-separated NAME=value pairs).
# Pure bash: the value never becomes an argument of another process.
config_from_init_env() {
  [[ -r "$init_environ" ]] || return 1
  local kv
  while IFS= read -r -d '' kv || [[ -n "$kv" ]]; do
    if [[ "$kv" == "$var="?* ]]; then
      printf '%s' "${kv#"$var="}"
      return 0
    fi
  done <"$init_environ"
  return 1
}

if [[ -e "$marker" ]]; then
  log "a job already started in this container ($(head -c 200 "$marker" 2>/dev/null)): never a second one"
  rm -f -- "$jit_file"
  exit 0
fi

jit=""
source=""
started_waiting=$SECONDS
log "waiting for the JIT runner config ($jit_file or $var in $init_environ)"
while :; do
  if [[ -s "$jit_file" ]]; then
    jit="$(<"$jit_file")"
    source="$jit_file"
  elif jit="$(config_from_init_env)"; then
    source="the container's env option"
  fi
  # A trailing newline is not part of the config; blanks never are.
  jit="${jit//[[:space:]]/}"
  [[ -n "$jit" ]] && break
  if ((wait_timeout > 0 && SECONDS - started_waiting >= wait_timeout)); then
    log "no JIT config after ${wait_timeout}s: giving up"
    exit 1
  fi
  sleep "$poll"
done

# The file goes first: the config is single-use and nothing else in here should ever read it.
rm -f -- "$jit_file"
mkdir -p -- "$(dirname "$marker")"
if ! printf 'job started %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$marker"; then
  log "cannot write the marker $marker: refusing to run a job that a restart could repeat"
  exit 1
fi
log "JIT config received from $source (${#jit} bytes); starting the runner once as $runner_user"

cd "$runner_dir" || exit 1
# The config travels in the environment of this one command only.
ACTIONS_RUNNER_INPUT_JITCONFIG="$jit" "$runuser_cmd" -u "$runner_user" -- "$runner_dir/run.sh"
status=$?
jit=""
log "the runner exited with status $status"
exit "$status"
