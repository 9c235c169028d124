#!/usr/bin/env bash
# Control one test server started by up.sh; meant for tests that stop or
# crash a server mid-run and bring it back.
#
#   ctl.sh status                 state of all servers (exit 0 if all that
#                                 have state are up, 3 otherwise)
#   ctl.sh stop NAME              SIGTERM (PostgreSQL: SIGINT = fast shutdown),
#                                 wait up to $AUDITPIPE_STOP_TIMEOUT s (30), then SIGKILL
#   ctl.sh kill NAME              SIGKILL the server and all its processes (a crash)
#   ctl.sh start NAME             start again on the same port, data dir and
#                                 credentials; returns once healthy
#   ctl.sh restart NAME           stop + start
#
# NAME: nats | postgres | kafka | s3 | victorialogs.
# Exit codes: 0 ok, 1 failed (log tail on stderr), 2 usage / no up.sh state.
# Non-interactive: reads no stdin, leaves no process attached to the caller's
# stdout/stderr.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }

cmd="${1:-}"
[[ -n "$cmd" ]] || usage

if [[ "$cmd" == status ]]; then
  load_state
  rc=0
  for n in "${ALL_SERVERS[@]}"; do
    if ! has_state "$n"; then
      printf '%-13s not set up\n' "$n"
      continue
    fi
    if pid="$(server_pid "$n")"; then
      if "health_$n" 2>/dev/null; then h=healthy; else h=UNHEALTHY; rc=3; fi
      printf '%-13s running pid=%s port=%s %s\n' "$n" "$pid" "$(server_port "$n")" "$h"
    else
      printf '%-13s stopped port=%s\n' "$n" "$(server_port "$n")"
      rc=3
    fi
  done
  exit $rc
fi

[[ $# -eq 2 ]] || usage
name="$(canon_name "$2")" || { log "unknown server '$2'"; usage; }

take_lock
load_state
has_state "$name" || { log "$name has no state: run scripts/servers/up.sh first"; exit 2; }

do_start() {
  if is_up "$name"; then
    log "$name already up on 127.0.0.1:$(server_port "$name")"
    return 0
  fi
  stop_server "$name"
  ensure_artifacts "$name"
  start_server "$name" || { show_log_tail "$name"; stop_server "$name" || true; die "$name failed to start"; }
  wait_healthy "$name" || { stop_server "$name" || true; die "$name did not become healthy on 127.0.0.1:$(server_port "$name")"; }
  write_env
  log "$name up (pid $(server_pid "$name"), 127.0.0.1:$(server_port "$name"))"
}

case "$cmd" in
  stop) stop_server "$name"; log "$name stopped" ;;
  kill) stop_server "$name" kill; log "$name killed" ;;
  start) do_start ;;
  restart) stop_server "$name"; do_start ;;
  *) usage ;;
esac
