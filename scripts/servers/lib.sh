# shellcheck shell=bash
# Shared code for up.sh, down.sh and ctl.sh. Sourced, never run by itself.
#
# Layout (both folders are git-ignored):
#   .cache/servers/<server>/<version>/...   built binaries / Kafka classpath (kept)
#   .servers/state                          ports + credentials (KEY=value)
#   .servers/env                            `export NAME=value` lines for tests
#   .servers/<server>/                      data dir + generated config
#   .servers/pids/<server>.pid              "PID STARTTIME" of the session leader
#   .servers/logs/<server>.log              server output (kept by down.sh)
#   .servers/logs/build-<server>.log        build / install output

set -euo pipefail

SERVERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SERVERS_DIR/../.." && pwd)"
# Go's release tarball installs to /usr/local/go, which a plain PATH (cron, sudo, CI) may not name.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then PATH="/usr/local/go/bin:$PATH"; fi

# ---------------------------------------------------------------- versions --
# Change a version here; the cache is keyed by it, so the next up.sh rebuilds.
KAFKA_VERSION="${AUDITPIPE_KAFKA_VERSION:-4.1.2}"
LOG4J2_VERSION="2.24.3"            # Kafka 4.x logging (log4j-slf4j-impl + log4j-core)
SLF4J_RELOAD4J_VERSION="1.7.36"    # Kafka 3.x logging
MAVEN_DEPENDENCY_PLUGIN="3.8.1"
NATS_VERSION="v2.14.9"
# MinIO: the proxy does not serve the RELEASE.2025-10-15T17-29-55Z tag (403);
# this pseudo-version is the repository's last commit (2026-02-12; only the
# README changed after the last release) and is what `@latest` resolves to.
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
# VictoriaLogs: pinned by scripts/servers/victorialogs/go.mod + go.sum.
VL_VERSION="v1.51.1-0.20260624061259-dc94972a8708"
PG_MAJOR="15"
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"

# ------------------------------------------------------------------ tuning --
KAFKA_HEAP_OPTS="${AUDITPIPE_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
STOP_TIMEOUT="${AUDITPIPE_STOP_TIMEOUT:-30}"     # seconds before SIGKILL
KAFKA_OFFSETS_PARTITIONS=10                      # __consumer_offsets partitions

# shellcheck disable=SC2034  # used by up.sh, down.sh, ctl.sh
ALL_SERVERS=(nats postgres kafka s3 victorialogs)

CACHE_DIR="${AUDITPIPE_SERVERS_CACHE:-$REPO_ROOT/.cache/servers}"
# Second copy outside the checkout (hard links where possible), so a fresh
# clone on the same machine (CI) reuses earlier builds. "off" disables it.
MACHINE_CACHE="${AUDITPIPE_MACHINE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/auditpipe-servers}"
RUN_DIR="$REPO_ROOT/.servers"
LOG_DIR="$RUN_DIR/logs"
PID_DIR="$RUN_DIR/pids"
STATE_FILE="$RUN_DIR/state"
ENV_FILE="$RUN_DIR/env"
HELPER=(python3 "$SERVERS_DIR/helper.py")

log()  { printf '[servers] %s\n' "$*" >&2; }
die()  { printf '[servers] ERROR: %s\n' "$*" >&2; exit 1; }

canon_name() {
  case "$1" in
    nats|nats-server) echo nats ;;
    postgres|postgresql|pg) echo postgres ;;
    kafka) echo kafka ;;
    s3|minio) echo s3 ;;
    victorialogs|victoria-logs|victoria|vl) echo victorialogs ;;
    *) return 1 ;;
  esac
}

# Serialise up/down/ctl on one checkout. fd 9 is closed in every server we
# launch (see launch), so a running server never holds the lock.
take_lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/.lock"
  if ! flock -w "${AUDITPIPE_LOCK_WAIT:-1200}" 9; then
    die "another up/down/ctl run holds $RUN_DIR/.lock"
  fi
}

# ------------------------------------------------------------------- state --
load_state() {
  if [[ -f "$STATE_FILE" ]]; then
    # shellcheck disable=SC1090
    source "$STATE_FILE"
  fi
  # a running cycle keeps the Kafka version its data was formatted with
  if [[ -n "${KAFKA_RUN_VERSION:-}" ]]; then KAFKA_VERSION="$KAFKA_RUN_VERSION"; fi
}

state_set() {  # KEY VALUE  (values are [A-Za-z0-9._-] only)
  local key="$1" value="$2" tmp
  mkdir -p "$RUN_DIR"
  tmp="$(mktemp "$RUN_DIR/.state.XXXXXX")"
  if [[ -f "$STATE_FILE" ]]; then grep -v "^$key=" "$STATE_FILE" >"$tmp" || true; fi
  printf '%s=%s\n' "$key" "$value" >>"$tmp"
  mv "$tmp" "$STATE_FILE"
  printf -v "$key" '%s' "$value"
}

has_state() {  # NAME -> whether ports/credentials exist for that server
  case "$1" in
    nats) [[ -n "${NATS_PORT:-}" ]] ;;
    postgres) [[ -n "${PG_PORT:-}" ]] ;;
    kafka) [[ -n "${KAFKA_PORT:-}" ]] ;;
    s3) [[ -n "${S3_PORT:-}" ]] ;;
    victorialogs) [[ -n "${VL_PORT:-}" ]] ;;
  esac
}

secret() { "${HELPER[@]}" secret "${1:-16}"; }

alloc_ports() {  # NAME -> allocates (new) ports for that server into state
  local name="$1" p
  case "$name" in
    nats)
      mapfile -t p < <("${HELPER[@]}" ports 2 "$REPO_ROOT")
      state_set NATS_PORT "${p[0]}"; state_set NATS_MONITOR_PORT "${p[1]}" ;;
    postgres)
      mapfile -t p < <("${HELPER[@]}" ports 1 "$REPO_ROOT")
      state_set PG_PORT "${p[0]}" ;;
    kafka)
      mapfile -t p < <("${HELPER[@]}" ports 2 "$REPO_ROOT")
      state_set KAFKA_PORT "${p[0]}"; state_set KAFKA_CONTROLLER_PORT "${p[1]}" ;;
    s3)
      mapfile -t p < <("${HELPER[@]}" ports 2 "$REPO_ROOT")
      state_set S3_PORT "${p[0]}"; state_set S3_CONSOLE_PORT "${p[1]}" ;;
    victorialogs)
      mapfile -t p < <("${HELPER[@]}" ports 1 "$REPO_ROOT")
      state_set VL_PORT "${p[0]}" ;;
  esac
  [[ ${#p[@]} -gt 0 && -n "${p[0]}" ]] || die "no free port for $name"
}

init_state() {  # NAME -> ports + credentials, created once per up..down cycle
  local name="$1"
  has_state "$name" && return 0
  # the state file must exist before ports are reserved (reservations of a
  # checkout without a state file count as stale)
  mkdir -p "$RUN_DIR"; touch "$STATE_FILE"
  case "$name" in
    nats) state_set NATS_TOKEN "$(secret 24)" ;;
    postgres)
      state_set PG_USER auditpipe
      state_set PG_DB auditpipe
      state_set PG_PASSWORD "$(secret 16)"
      state_set PG_SUPERUSER_PASSWORD "$(secret 16)" ;;
    kafka) state_set KAFKA_RUN_VERSION "$KAFKA_VERSION" ;;
    s3)
      state_set S3_ACCESS_KEY "ap$(secret 9)"
      state_set S3_SECRET_KEY "$(secret 20)" ;;
  esac
  alloc_ports "$name"
}

write_env() {
  local tmp
  tmp="$(mktemp "$RUN_DIR/.env.XXXXXX")"
  {
    echo "# Test-server endpoints written by scripts/servers/up.sh ($(date -u +%FT%TZ))."
    echo "# Load with:  . .servers/env    (valid until scripts/servers/down.sh)"
    if has_state nats; then
      echo "export NATS_URL=nats://127.0.0.1:$NATS_PORT"
      echo "export NATS_TOKEN=$NATS_TOKEN"
      echo "export NATS_MONITOR_URL=http://127.0.0.1:$NATS_MONITOR_PORT"
    fi
    if has_state postgres; then
      echo "export DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
    fi
    if has_state kafka; then
      echo "export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
    fi
    if has_state s3; then
      echo "export S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
      echo "export S3_ACCESS_KEY=$S3_ACCESS_KEY"
      echo "export S3_SECRET_KEY=$S3_SECRET_KEY"
      echo "export S3_REGION=us-east-1"
    fi
    if has_state victorialogs; then
      echo "export VICTORIA_URL=http://127.0.0.1:$VL_PORT"
    fi
    echo "export AUDITPIPE_SERVERS_CTL=$SERVERS_DIR/ctl.sh"
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
}

# --------------------------------------------------------------- artifacts --
nats_bin()  { echo "$CACHE_DIR/nats-server/$NATS_VERSION/nats-server"; }
minio_bin() { echo "$CACHE_DIR/minio/$MINIO_VERSION/minio"; }
vl_key()    { cat "$SERVERS_DIR/victorialogs/go.mod" "$SERVERS_DIR/victorialogs/go.sum" | sha256sum | cut -c1-12; }
vl_bin()    { echo "$CACHE_DIR/victoria-logs/$VL_VERSION-$(vl_key)/victoria-logs"; }
kafka_is_3() { [[ "$KAFKA_VERSION" == 3.* ]]; }
kafka_dir() {
  if kafka_is_3; then echo "$CACHE_DIR/kafka/$KAFKA_VERSION-reload4j$SLF4J_RELOAD4J_VERSION"
  else echo "$CACHE_DIR/kafka/$KAFKA_VERSION-log4j$LOG4J2_VERSION"; fi
}

artifact_ready() {  # NAME
  case "$1" in
    nats) [[ -x "$(nats_bin)" ]] ;;
    s3) [[ -x "$(minio_bin)" ]] ;;
    victorialogs) [[ -x "$(vl_bin)" ]] ;;
    kafka) [[ -f "$(kafka_dir)/libs/kafka_2.13-$KAFKA_VERSION.jar" ]] ;;
    postgres) [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/postgres" && -x "$PG_BIN/psql" ]] ;;
  esac
}

# Each build writes into a temporary folder and renames it into place at the
# end, so an interrupted build never leaves a half-filled cache entry.
_finish_dir() {  # TMPDIR FINALDIR
  mkdir -p "$(dirname "$2")"
  rm -rf "$2"
  mv "$1" "$2"
}

build_nats() {
  local tmp; tmp="$(mktemp -d "$CACHE_DIR/.build.XXXXXX")"
  CGO_ENABLED=0 GOBIN="$tmp" GOWORK=off go install -trimpath "github.com/nats-io/nats-server/v2@$NATS_VERSION"
  _finish_dir "$tmp" "$(dirname "$(nats_bin)")"
}

build_s3() {
  local tmp; tmp="$(mktemp -d "$CACHE_DIR/.build.XXXXXX")"
  CGO_ENABLED=0 GOBIN="$tmp" GOWORK=off go install -trimpath -tags kqueue "github.com/minio/minio@$MINIO_VERSION"
  _finish_dir "$tmp" "$(dirname "$(minio_bin)")"
}

build_victorialogs() {
  local tmp; tmp="$(mktemp -d "$CACHE_DIR/.build.XXXXXX")"
  (cd "$SERVERS_DIR/victorialogs" &&
    CGO_ENABLED=0 GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly" go build -trimpath -o "$tmp/victoria-logs" \
      github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs)
  _finish_dir "$tmp" "$(dirname "$(vl_bin)")"
}

build_kafka() {
  local tmp deps
  tmp="$(mktemp -d "$CACHE_DIR/.build.XXXXXX")"
  if kafka_is_3; then
    deps="    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>$SLF4J_RELOAD4J_VERSION</version></dependency>"
  else
    deps="    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J2_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J2_VERSION</version></dependency>"
  fi
  KV="$KAFKA_VERSION" DEPS="$deps" python3 -c '
import os, sys
t = open(sys.argv[1]).read()
sys.stdout.write(t.replace("@KAFKA_VERSION@", os.environ["KV"]).replace("@LOGGING_DEPS@", os.environ["DEPS"]))
' "$SERVERS_DIR/kafka-pom.xml.in" >"$tmp/pom.xml"
  mvn -B -ntp -f "$tmp/pom.xml" \
    "org.apache.maven.plugins:maven-dependency-plugin:$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$tmp/libs"
  [[ -f "$tmp/libs/kafka_2.13-$KAFKA_VERSION.jar" ]] || { echo "kafka_2.13-$KAFKA_VERSION.jar missing after mvn" >&2; return 1; }
  _finish_dir "$tmp" "$(kafka_dir)"
}

build_postgres() {
  if [[ $EUID -ne 0 ]]; then
    echo "PostgreSQL $PG_MAJOR is not installed ($PG_BIN/initdb missing) and this is not root." >&2
    echo "Install it with: sudo apt-get install -y postgresql-$PG_MAJOR" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "postgresql-$PG_MAJOR"
}

need_tool() {  # TOOL NAME
  command -v "$1" >/dev/null 2>&1 || die "$2 needs '$1' on PATH"
}

artifact_dir() {  # NAME -> the versioned cache folder of that server
  case "$1" in
    nats) dirname "$(nats_bin)" ;;
    s3) dirname "$(minio_bin)" ;;
    victorialogs) dirname "$(vl_bin)" ;;
    kafka) kafka_dir ;;
  esac
}

# Copy (hard link where possible) one versioned folder between the checkout's
# cache and the machine cache. Never fails the caller.
_sync_dir() {  # FROM TO
  local from="$1" to="$2" tmp
  [[ -d "$from" && ! -e "$to" ]] || return 0
  mkdir -p "$(dirname "$to")" 2>/dev/null || return 0
  tmp="$(mktemp -d "$(dirname "$to")/.sync.XXXXXX" 2>/dev/null)" || return 0
  if cp -al "$from/." "$tmp/" 2>/dev/null || cp -a "$from/." "$tmp/" 2>/dev/null; then
    mv -T "$tmp" "$to" 2>/dev/null || rm -rf "$tmp"
  else
    rm -rf "$tmp"
  fi
  return 0
}

machine_copy() {  # NAME -> path of the machine-cache copy of that artifact
  local d
  d="$(artifact_dir "$1")"
  echo "$MACHINE_CACHE/${d#"$CACHE_DIR"/}"
}

# Obtain every missing artifact for the given servers, all at the same time.
ensure_artifacts() {
  local name pids=() names=() failed=0 i t0=$SECONDS
  mkdir -p "$CACHE_DIR" "$LOG_DIR"
  rm -rf "$CACHE_DIR"/.build.* 2>/dev/null || true
  for name in "$@"; do
    artifact_ready "$name" && continue
    if [[ "$name" != postgres && "$MACHINE_CACHE" != off ]]; then
      _sync_dir "$(machine_copy "$name")" "$(artifact_dir "$name")"
      if artifact_ready "$name"; then log "$name: reused $(machine_copy "$name")"; continue; fi
    fi
    case "$name" in
      nats|s3|victorialogs) need_tool go "building $name" ;;
      kafka) need_tool mvn "fetching Kafka"; need_tool java "Kafka" ;;
    esac
    log "obtaining $name (log: .servers/logs/build-$name.log)"
    ( t=$SECONDS; "build_$name"; echo "[servers] obtained $name in $((SECONDS - t))s" ) \
      </dev/null >"$LOG_DIR/build-$name.log" 2>&1 9>&- &
    pids+=("$!"); names+=("$name")
  done
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      failed=1
      log "obtaining ${names[$i]} FAILED; last lines of .servers/logs/build-${names[$i]}.log:"
      tail -n 40 "$LOG_DIR/build-${names[$i]}.log" >&2 || true
    fi
  done
  [[ $failed -eq 0 ]] || die "could not obtain every server"
  if [[ ${#pids[@]} -gt 0 ]]; then log "obtained ${names[*]} in $((SECONDS - t0))s"; fi
  for name in "$@"; do
    artifact_ready "$name" || die "$name artifact missing after build"
    if [[ "$name" != postgres && "$MACHINE_CACHE" != off ]]; then
      _sync_dir "$(artifact_dir "$name")" "$(machine_copy "$name")"
    fi
  done
}

# ----------------------------------------------------------------- process --
pid_file() { echo "$PID_DIR/$1.pid"; }
log_file() { echo "$LOG_DIR/$1.log"; }

proc_start_time() {  # PID -> field 22 of /proc/PID/stat; fails for zombies
  local st f
  read -r st 2>/dev/null <"/proc/$1/stat" || return 1
  # shellcheck disable=SC2206
  f=(${st##*) })          # f[0] is field 3 (state), so field 22 is f[19]
  [[ "${f[0]}" != Z && "${f[0]}" != X ]] || return 1
  echo "${f[19]}"
}

# PID of a running server started by us, or nothing (stale pid files removed).
server_pid() {
  local f pid start now
  f="$(pid_file "$1")"
  [[ -f "$f" ]] || return 1
  read -r pid start <"$f" || true
  if [[ -n "${pid:-}" ]] && now="$(proc_start_time "$pid")" && [[ "$now" == "${start:-}" ]]; then
    echo "$pid"; return 0
  fi
  rm -f "$f"
  return 1
}

# launch NAME CMD...: run CMD detached in its own session (and so its own
# process group), stdin from /dev/null, stdout+stderr appended to its log, the
# lock fd closed. Writes "PID STARTTIME" to the pid file.
launch() {
  local name="$1"; shift
  local pf lf pid i
  pf="$(pid_file "$name")"; lf="$(log_file "$name")"
  mkdir -p "$PID_DIR" "$LOG_DIR"
  rm -f "$pf" "$pf.tmp"
  printf '\n===== %s starting %s =====\n' "$(date -u +%FT%TZ)" "$name" >>"$lf"
  # shellcheck disable=SC2016  # expanded by the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pf.tmp" "$@" </dev/null >>"$lf" 2>&1 9>&- &
  for i in $(seq 1 100); do
    [[ -s "$pf.tmp" ]] && break
    sleep 0.05
  done
  [[ -s "$pf.tmp" ]] || die "could not launch $name"
  pid="$(cat "$pf.tmp")"
  printf '%s %s\n' "$pid" "$(proc_start_time "$pid" || echo gone)" >"$pf"
  rm -f "$pf.tmp"
}

# All descendants of PID (PostgreSQL's children call setsid(), so they are
# not in the postmaster's process group; a group kill alone misses them).
descendants() {
  local root="$1" d pid ppid changed=1
  local -A tree=([$root]=1)
  local -a procs=()
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    ppid="$(awk '/^PPid:/ {print $2; exit}' "$d/status" 2>/dev/null)" || continue
    [[ -n "$ppid" ]] && procs+=("$pid:$ppid")
  done
  while ((changed)); do
    changed=0
    for d in "${procs[@]}"; do
      pid="${d%%:*}"; ppid="${d##*:}"
      if [[ -n "${tree[$ppid]:-}" && -z "${tree[$pid]:-}" ]]; then tree[$pid]=1; changed=1; fi
    done
  done
  unset "tree[$root]"
  echo "${!tree[@]}"
}

# Whether a live (non-zombie) process is in process group PGID or is one of
# the given pids. Zombies do not count: an init that does not reap them must
# not make a stopped server look alive.
any_alive() {  # PGID [PID...]
  local pg="$1" d st f
  shift
  local want=" $* "
  for d in /proc/[0-9]*; do
    read -r st 2>/dev/null <"$d/stat" || continue
    # shellcheck disable=SC2206
    f=(${st##*) })          # f[0]=state f[1]=ppid f[2]=pgrp
    [[ "${f[0]}" == Z || "${f[0]}" == X ]] && continue
    if [[ "${f[2]}" == "$pg" || "$want" == *" ${d#/proc/} "* ]]; then return 0; fi
  done
  return 1
}

# Servers of this checkout whose pid file is lost or stale: processes whose
# command line names that server's folder under .servers/.
orphan_pids() {  # NAME
  local f pid comm
  local -a hits
  local -a pats=(-e "$RUN_DIR/$1/")
  [[ "$1" == postgres ]] && pats+=(-e "$(pg_alt_dir)/")
  mapfile -t hits < <(grep -lzF "${pats[@]}" /proc/[0-9]*/cmdline 2>/dev/null)
  for f in "${hits[@]}"; do
    pid="${f#/proc/}"; pid="${pid%/cmdline}"
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    read -r comm 2>/dev/null <"/proc/$pid/comm" || continue
    [[ "$comm" == grep ]] && continue          # the grep above, matching itself
    proc_start_time "$pid" >/dev/null || continue
    echo "$pid"
  done
  return 0
}

stop_orphans() {  # NAME [kill]
  local -a left
  local i
  mapfile -t left < <(orphan_pids "$1")
  [[ ${#left[@]} -gt 0 ]] || return 0
  log "$1: stopping processes left without pid file: ${left[*]}"
  if [[ "${2:-}" != kill ]]; then
    if [[ "$1" == postgres ]]; then kill -INT "${left[@]}" 2>/dev/null || true
    else kill -TERM "${left[@]}" 2>/dev/null || true; fi
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      any_alive none "${left[@]}" || return 0
      sleep 0.1
    done
  fi
  kill -KILL "${left[@]}" 2>/dev/null || true
  sleep 0.5
}

# stop_server NAME [kill]: polite signal to the server, wait up to
# STOP_TIMEOUT, then SIGKILL its process group and all its descendants. With
# "kill", SIGKILL at once (a crash). Returns 0 also when nothing ran.
stop_server() {
  local name="$1" mode="${2:-}" pid sig i kids
  if ! pid="$(server_pid "$name")"; then
    rm -f "$(pid_file "$name")"
    stop_orphans "$name" "$mode"
    return 0
  fi
  # shellcheck disable=SC2207
  kids=($(descendants "$pid"))
  sig=TERM
  [[ "$name" == postgres ]] && sig=INT     # PostgreSQL "fast" shutdown
  if [[ "$mode" == kill ]]; then
    sig=KILL
    kill -KILL -- "-$pid" "${kids[@]}" 2>/dev/null || true
  else
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      any_alive "$pid" "${kids[@]}" || break
      sleep 0.1
    done
    if any_alive "$pid" "${kids[@]}"; then
      log "$name did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL -- "-$pid" "${kids[@]}" 2>/dev/null || true
    fi
  fi
  for ((i = 0; i < 100; i++)); do
    any_alive "$pid" "${kids[@]}" || break
    sleep 0.1
  done
  any_alive "$pid" "${kids[@]}" && die "$name (pid $pid) survived SIGKILL"
  # let init reap the zombies (PostgreSQL takes a zombie postmaster for a live one)
  for ((i = 0; i < 30; i++)); do
    [[ -e "/proc/$pid" ]] || break
    sleep 0.1
  done
  rm -f "$(pid_file "$name")"
  printf '===== %s stopped %s (SIG%s) =====\n' "$(date -u +%FT%TZ)" "$name" "$sig" >>"$(log_file "$name")"
}

# ------------------------------------------------------------- per server --
# PostgreSQL refuses to run as root: as root it runs as the "postgres" user
# (created by the Debian package). That user must be able to reach the data
# dir; when the checkout is under a folder it cannot enter (e.g. /root), the
# data dir lives in /tmp and .servers/postgres/data is a symlink to it.
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

pg_alt_dir() { echo "${TMPDIR:-/tmp}/auditpipe-pg-$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"; }

# The data dir as PostgreSQL sees it: symlinks resolved, so the postgres user
# never has to pass through the checkout when the data lives in /tmp.
pg_data_dir() {
  local base="$RUN_DIR/postgres" alt
  mkdir -p "$base"
  if [[ -e "$base/data" || -L "$base/data" ]]; then echo "$base/data"; return; fi
  if [[ $EUID -eq 0 ]]; then
    mkdir -p "$base/data"
    chown postgres:postgres "$base/data"; chmod 700 "$base/data"
    if ! as_pg test -w "$base/data" 2>/dev/null; then
      rmdir "$base/data"
      alt="$(pg_alt_dir)"
      rm -rf "$alt"; mkdir -p "$alt"; chmod 755 "$alt"
      mkdir -p "$alt/data"; chown postgres:postgres "$alt/data"; chmod 700 "$alt/data"
      ln -s "$alt/data" "$base/data"
    fi
  else
    mkdir -p "$base/data"; chmod 700 "$base/data"
  fi
  echo "$base/data"
}

start_nats() {
  local dir="$RUN_DIR/nats"
  mkdir -p "$dir/data"
  cat >"$dir/nats.conf" <<EOF
# generated by scripts/servers (same as: -a 127.0.0.1 -p P -m M -js -sd DIR --auth TOKEN)
server_name: auditpipe-test
listen: "127.0.0.1:$NATS_PORT"
http: "127.0.0.1:$NATS_MONITOR_PORT"
authorization { token: "$NATS_TOKEN" }
jetstream {
  store_dir: "$dir/data"
  max_memory_store: 512MB
  max_file_store: 8GB
}
EOF
  launch nats "$(nats_bin)" -c "$dir/nats.conf"
}
health_nats() {
  "${HELPER[@]}" http "http://127.0.0.1:$NATS_MONITOR_PORT/healthz"
}

start_postgres() {
  local data pw
  data="$(pg_data_dir)"
  data="$(readlink -f "$data")"
  # After a crash (ctl.sh kill) the lock file names a dead (or zombie) PID;
  # PostgreSQL would refuse to start while a zombie with that PID exists.
  if [[ -f "$data/postmaster.pid" ]]; then
    local old
    old="$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)"
    if [[ -z "$old" ]] || ! proc_start_time "$old" >/dev/null; then
      rm -f "$data/postmaster.pid"
    fi
  fi
  if [[ ! -s "$data/PG_VERSION" ]]; then
    pw="$(mktemp "$(dirname "$data")/.pgpw.XXXXXX")"
    printf '%s\n' "$PG_SUPERUSER_PASSWORD" >"$pw"
    [[ $EUID -eq 0 ]] && chown postgres "$pw"
    if ! as_pg "$PG_BIN/initdb" -D "$data" -U postgres --pwfile="$pw" -A scram-sha-256 \
        -E UTF8 --no-locale --no-sync >>"$(log_file postgres)" 2>&1; then
      rm -f "$pw"; return 1
    fi
    rm -f "$pw"
  fi
  local asuser=()
  [[ $EUID -eq 0 ]] && asuser=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  launch postgres "${asuser[@]}" "$PG_BIN/postgres" -D "$data" \
    -c listen_addresses=127.0.0.1 -c port="$PG_PORT" -c unix_socket_directories= \
    -c max_connections=200 -c shared_buffers=128MB -c fsync=off \
    -c log_min_messages=warning -c log_line_prefix='%m [%p] '
}
pg_query() {  # USER PASSWORD DB SQL
  PGPASSWORD="$2" PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$1" -d "$3" \
    -v ON_ERROR_STOP=1 -tAc "$4"
}
health_postgres() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 || return 1
  [[ "$(pg_query postgres "$PG_SUPERUSER_PASSWORD" postgres 'select 1' 2>/dev/null)" == 1 ]]
}
# After the first healthy start: the test role and database.
post_start_postgres() {
  local exists
  exists="$(pg_query postgres "$PG_SUPERUSER_PASSWORD" postgres \
    "select count(*) from pg_roles where rolname = '$PG_USER'")"
  if [[ "$exists" != 1 ]]; then
    pg_query postgres "$PG_SUPERUSER_PASSWORD" postgres \
      "create role $PG_USER login createdb password '$PG_PASSWORD'" >/dev/null
  fi
  # DROP DATABASE ... WITH (FORCE) must be able to end an autovacuum worker still busy on a
  # database a test just wrote; without this a role that is not superuser gets SQLSTATE 42501.
  pg_query postgres "$PG_SUPERUSER_PASSWORD" postgres "grant pg_signal_backend to $PG_USER" >/dev/null
  exists="$(pg_query postgres "$PG_SUPERUSER_PASSWORD" postgres \
    "select count(*) from pg_database where datname = '$PG_DB'")"
  if [[ "$exists" != 1 ]]; then
    pg_query postgres "$PG_SUPERUSER_PASSWORD" postgres "create database $PG_DB owner $PG_USER" >/dev/null
  fi
  [[ "$(pg_query "$PG_USER" "$PG_PASSWORD" "$PG_DB" 'select 1')" == 1 ]]
}

start_kafka() {
  local dir="$RUN_DIR/kafka" kdir logcfg cp jvm
  kdir="$(kafka_dir)"
  cp="$kdir/libs/*"
  mkdir -p "$dir/data"
  if kafka_is_3; then
    logcfg=(-Dlog4j.configuration="file:$SERVERS_DIR/kafka-log4j.properties")
  else
    logcfg=(-Dlog4j2.configurationFile="$SERVERS_DIR/kafka-log4j2.properties")
  fi
  cat >"$dir/server.properties" <<EOF
# generated by scripts/servers: single-node KRaft broker+controller for tests
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=$KAFKA_OFFSETS_PARTITIONS
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# after a crash (ctl.sh kill) the new incarnation can register only once the
# old one's session expired: 5 s instead of 9 s
broker.session.timeout.ms=5000
broker.heartbeat.interval.ms=1000
auto.create.topics.enable=true
delete.topic.enable=true
EOF
  jvm=(java -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true "${logcfg[@]}")
  # Format (first start only) and broker run inside the launched process, so
  # the ~3 s JVM of the storage tool does not hold up the other servers.
  {
    echo "# generated by scripts/servers: format KRaft storage once, then run the broker"
    echo "set -e"
    printf 'if [ ! -f %q ]; then\n' "$dir/data/meta.properties"
    printf '  %s\n' "$(printf '%q ' "${jvm[@]}" -Xmx256m -cp "$cp" kafka.tools.StorageTool format \
      -t "$("${HELPER[@]}" kafka-id)" -c "$dir/server.properties")"
    echo "fi"
    # shellcheck disable=SC2086
    printf 'exec %s\n' "$(printf '%q ' "${jvm[@]}" $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -cp "$cp" kafka.Kafka "$dir/server.properties")"
  } >"$dir/start.sh"
  launch kafka bash "$dir/start.sh"
}
health_kafka() {
  # During start-up: "Kafka Server started" logged since this launch. Always:
  # a real Metadata round trip that lists the broker.
  if [[ -n "${KAFKA_LOG_OFFSET:-}" ]]; then
    tail -c "+$((KAFKA_LOG_OFFSET + 1))" "$(log_file kafka)" 2>/dev/null | grep -q 'Kafka Server started' || return 1
  fi
  "${HELPER[@]}" kafka "$KAFKA_PORT"
}

# After every start: internal topics created and loaded (see helper.py).
post_start_kafka() {
  "${HELPER[@]}" kafka-warm "$KAFKA_PORT" "$KAFKA_OFFSETS_PARTITIONS" 90
}

start_s3() {
  local dir="$RUN_DIR/s3"
  mkdir -p "$dir/data"
  launch s3 env MINIO_ROOT_USER="$S3_ACCESS_KEY" MINIO_ROOT_PASSWORD="$S3_SECRET_KEY" \
    MINIO_SITE_REGION=us-east-1 MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1 \
    "$(minio_bin)" server --quiet --anonymous \
    --address "127.0.0.1:$S3_PORT" --console-address "127.0.0.1:$S3_CONSOLE_PORT" "$dir/data"
}
health_s3() {
  "${HELPER[@]}" http "http://127.0.0.1:$S3_PORT/minio/health/live" &&
    "${HELPER[@]}" http "http://127.0.0.1:$S3_PORT/minio/health/ready"
}

start_victorialogs() {
  local dir="$RUN_DIR/victorialogs"
  mkdir -p "$dir/data"
  launch victorialogs "$(vl_bin)" -storageDataPath="$dir/data" \
    -httpListenAddr="127.0.0.1:$VL_PORT" -retentionPeriod=100y -futureRetention=100y \
    -memory.allowedBytes=512MiB -loggerLevel=WARN
}
health_victorialogs() {
  "${HELPER[@]}" http "http://127.0.0.1:$VL_PORT/health" OK
}

server_port() {
  case "$1" in
    nats) echo "${NATS_PORT:-}" ;;
    postgres) echo "${PG_PORT:-}" ;;
    kafka) echo "${KAFKA_PORT:-}" ;;
    s3) echo "${S3_PORT:-}" ;;
    victorialogs) echo "${VL_PORT:-}" ;;
  esac
}

start_timeout() {
  case "$1" in
    kafka) echo "${AUDITPIPE_KAFKA_START_TIMEOUT:-180}" ;;
    *) echo "${AUDITPIPE_START_TIMEOUT:-90}" ;;
  esac
}

declare -A LOG_OFFSET=()
# Start NAME in the background (no waiting); remembers where its log stood.
start_server() {
  local name="$1" lf
  lf="$(log_file "$name")"
  mkdir -p "$LOG_DIR"; touch "$lf"
  LOG_OFFSET[$name]="$(stat -c %s "$lf")"
  if [[ "$name" == kafka ]]; then KAFKA_LOG_OFFSET="${LOG_OFFSET[$name]}"; fi
  "start_$name"
}

# The log of NAME since its last start_server (last 40 lines), to stderr.
show_log_tail() {
  tail -c "+$((${LOG_OFFSET[$1]:-0} + 1))" "$(log_file "$1")" 2>/dev/null | tail -n 40 >&2 || true
}

log_since_start() {  # NAME
  tail -c "+$((${LOG_OFFSET[$1]:-0} + 1))" "$(log_file "$1")" 2>/dev/null || true
}

# Wait until NAME is healthy; on failure print the log tail and return 1.
wait_healthy() {
  local name="$1" timeout pid deadline lf
  timeout="$(start_timeout "$name")"
  lf="$(log_file "$name")"
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if ! pid="$(server_pid "$name")"; then
      log "$name exited during start-up; last lines of .servers/logs/$name.log:"
      show_log_tail "$name"
      return 1
    fi
    if "health_$name" 2>/dev/null; then
      if declare -F "post_start_$name" >/dev/null; then
        if ! "post_start_$name" 2>>"$lf"; then
          log "$name started but its set-up failed; last lines of .servers/logs/$name.log:"
          show_log_tail "$name"
          return 1
        fi
      fi
      return 0
    fi
    sleep 0.25
  done
  log "$name not healthy after ${timeout}s; last lines of .servers/logs/$name.log:"
  show_log_tail "$name"
  return 1
}

is_up() {  # NAME -> running (our pid) and healthy
  server_pid "$1" >/dev/null && has_state "$1" && "health_$1" 2>/dev/null
}
