#!/usr/bin/env bash
# Start the project's real test servers (NATS, PostgreSQL, Kafka, S3/MinIO,
# VictoriaLogs) on free 127.0.0.1 ports and write .servers/env.
#
#   bash scripts/servers/up.sh [NAME...]      (npm run servers:up)
#
# NAME is one of nats postgres kafka s3 victorialogs (default: all five).
# Idempotent: servers that already run and are healthy are left alone.
# First run obtains and builds everything (cached in .cache/servers/).
# See docs/testing.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

T0=$SECONDS
names=()
if [[ $# -eq 0 ]]; then
  names=("${ALL_SERVERS[@]}")
else
  for a in "$@"; do
    n="$(canon_name "$a")" || die "unknown server '$a' (use: ${ALL_SERVERS[*]})"
    names+=("$n")
  done
fi

need_tool python3 "up.sh"
need_tool setsid "up.sh"
need_tool flock "up.sh"
take_lock
load_state

todo=()
for n in "${names[@]}"; do
  if is_up "$n"; then
    log "$n already up on 127.0.0.1:$(server_port "$n")"
  else
    todo+=("$n")
  fi
done

if [[ ${#todo[@]} -eq 0 ]]; then
  write_env
  log "all requested servers are up; env: $ENV_FILE"
  exit 0
fi

ensure_artifacts "${todo[@]}"

for n in "${todo[@]}"; do
  stop_server "$n"          # a stale or unhealthy leftover of an earlier run
  init_state "$n"
done

started=()
fail() {
  local n
  for n in "${started[@]}"; do stop_server "$n" || true; done
  die "$1 (stopped: ${started[*]:-nothing}; logs in .servers/logs/)"
}

T1=$SECONDS
for n in "${todo[@]}"; do
  log "starting $n on 127.0.0.1:$(server_port "$n")"
  if ! start_server "$n"; then
    started+=("$n")
    log "$n failed to start; last lines of .servers/logs/$n.log:"
    show_log_tail "$n"
    fail "$n failed to start"
  fi
  started+=("$n")
done

for n in "${todo[@]}"; do
  if ! wait_healthy "$n"; then
    # Someone may have taken a port between choosing and binding it: choose
    # new ports once and retry.
    if log_since_start "$n" | grep -qi 'address already in use'; then
      log "$n: port taken; choosing new ports and retrying"
      stop_server "$n"
      alloc_ports "$n"
      start_server "$n" || { show_log_tail "$n"; fail "$n failed to start"; }
      wait_healthy "$n" || fail "$n did not become healthy"
    else
      fail "$n did not become healthy"
    fi
  fi
  log "$n healthy (pid $(server_pid "$n"), 127.0.0.1:$(server_port "$n"))"
done

write_env
log "started ${todo[*]} in $((SECONDS - T1))s (total $((SECONDS - T0))s); env: $ENV_FILE"
