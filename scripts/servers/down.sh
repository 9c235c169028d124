#!/usr/bin/env bash
# Stop every test server started by up.sh / ctl.sh and delete their data.
#
#   bash scripts/servers/down.sh      (npm run servers:down)
#
# Safe to run twice or when nothing runs. Keeps .servers/logs/ for debugging.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ! -d "$RUN_DIR" ]]; then
  log "nothing to stop"
  exit 0
fi
take_lock
load_state

for ((i = ${#ALL_SERVERS[@]} - 1; i >= 0; i--)); do
  n="${ALL_SERVERS[$i]}"
  if server_pid "$n" >/dev/null; then
    log "stopping $n"
    stop_server "$n"
  fi
done

# Servers whose pid file got lost: anything still running with its folder
# under .servers/ on its command line.
for n in "${ALL_SERVERS[@]}"; do stop_orphans "$n"; done

# PostgreSQL data may live in /tmp behind a symlink (see pg_data_dir).
if [[ -L "$RUN_DIR/postgres/data" ]]; then
  target="$(readlink -f "$RUN_DIR/postgres/data" || true)"
  [[ -n "$target" ]] && rm -rf "$(dirname "$target")"
fi
"${HELPER[@]}" release "$REPO_ROOT" || true
# MinIO COMPLIANCE-locked objects are plain files: rm -rf removes them.
find "$RUN_DIR" -mindepth 1 -maxdepth 1 ! -name logs ! -name .lock -exec rm -rf {} +
log "all test servers stopped; data removed (logs kept in .servers/logs/)"
