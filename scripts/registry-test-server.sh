#!/bin/bash
# Start or stop a throwaway CNCF distribution registry (Debian's docker-registry) on 127.0.0.1.
#   registry-test-server.sh start DIR PORT   # storage in DIR/data, log DIR/registry.log, pid DIR/registry.pid
#   registry-test-server.sh stop DIR
# Used by bench/pull.sh; the Rust tests (tests/registry.rs) start their own the same way.
set -eu
cmd=${1:?start|stop}; dir=${2:?DIR}
case "$cmd" in
start)
  port=${3:?PORT}
  mkdir -p "$dir/data"
  cat > "$dir/config.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  for _ in $(seq 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then exit 0; fi
    sleep 0.05
  done
  echo "registry on 127.0.0.1:$port did not start; see $dir/registry.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/registry.pid" ]; then
    kill "$(cat "$dir/registry.pid")" 2>/dev/null || true
    rm -f "$dir/registry.pid"
  fi
  ;;
*) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
