#!/usr/bin/env bash
# b2m beside what a user would otherwise run, on one database of SIZE_MB (default 256):
#   hashing      b2m status (cold content hash, then a no-op status from the cache)  vs  sha256sum
#   snapshot     b2m upload to a local folder       vs  sqlite3 .backup + cp
#   S3 upload    b2m upload                         vs  aws s3 cp        (same local s3s-fs server)
#   S3 download  b2m download                       vs  aws s3 cp
# and the peak memory (max RSS) of b2m for each. Installs awscli from PyPI if it is missing.
set -euo pipefail
SIZE_MB=${1:-256}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
cargo build --release --quiet --bin b2m --example s3-server
# B2M_BIN: measure another b2m binary (an older build, to compare) against the same anchors.
B2M=${B2M_BIN:-$ROOT/target/release/b2m}
echo "b2m: $B2M ($(stat -c %s "$B2M") bytes)"
command -v aws >/dev/null || python3 -m pip install --quiet awscli
command -v sqlite3 >/dev/null || { echo "bench needs sqlite3 (apt-get install sqlite3)"; exit 1; }

WORK=$(mktemp -d /tmp/b2m-bench.XXXXXX)
trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
export B2M_ACCESS_KEY_ID=benchkey AWS_ACCESS_KEY_ID=benchkey
export B2M_SECRET_ACCESS_KEY=benchsecret AWS_SECRET_ACCESS_KEY=benchsecret
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

mkdir -p "$WORK/s3/bench" "$WORK/out"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$ROOT/target/release/examples/s3-server" "$WORK/s3" "$PORT" benchkey benchsecret 2>/dev/null &
SERVER_PID=$!
ENDPOINT=http://127.0.0.1:$PORT
sleep 0.5

project() { # project DIR URL
  mkdir -p "$1/db/all_dbs"
  printf '[remote]\nurl = "%s"\nendpoint = "%s"\nregion = "us-east-1"\n' "$2" "$ENDPOINT" > "$1/b2m.toml"
  printf '[db]\nbigdb = "big-db-v1.db"\npath = "%s/db/all_dbs/"\n' "$1" > "$1/db/all_dbs/db.toml"
}

echo "making a ${SIZE_MB} MiB database…"
DB=$WORK/big-db-v1.db
python3 - "$DB" "$SIZE_MB" <<'PY'
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1]); conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
rows = int(sys.argv[2]) * 1024 * 1024 // 4096
conn.executemany("INSERT INTO t(b) VALUES (?)", ((os.urandom(4000),) for _ in range(rows))); conn.commit()
PY
SIZE=$(stat -c %s "$DB")

t() { # t LABEL CMD…   → seconds and max RSS
  local label=$1 start end rss
  shift
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; exit 1; }
  end=$(date +%s.%N)
  rss=$(tail -1 "$WORK/rss")
  printf '  %-44s %7.2f s  %7.0f MiB/s  max RSS %5d MiB\n' "$label" "$(echo "$end - $start" | bc)" "$(echo "$SIZE / 1048576 / ($end - $start)" | bc -l)" $((rss / 1024))
}

echo "database: $(echo "$SIZE / 1048576" | bc) MiB"
echo
echo "hashing"
project "$WORK/local" "file://$WORK/bucket"; mkdir -p "$WORK/bucket"
cp "$DB" "$WORK/local/db/all_dbs/"
touch -d '-1 minute' "$WORK/local/db/all_dbs/big-db-v1.db"
t "sha256sum" sha256sum "$DB"
t "b2m status (cold: hash)" "$B2M" -C "$WORK/local" status
t "b2m status (cached)" "$B2M" -C "$WORK/local" status

echo
echo "snapshot + integrity check + hash + store (local folder bucket)"
t "sqlite3 .backup then cp" bash -c "sqlite3 '$DB' '.backup $WORK/out/backup.db' && cp '$WORK/out/backup.db' '$WORK/out/copy.db'"
t "b2m upload (file://)" "$B2M" -C "$WORK/local" upload big-db

echo
echo "S3 (s3s-fs on 127.0.0.1)"
project "$WORK/s3dev" "s3://bench/p"
cp "$DB" "$WORK/s3dev/db/all_dbs/"
t "aws s3 cp (upload)" aws --endpoint-url "$ENDPOINT" s3 cp --quiet "$DB" s3://bench/awscli/big.db
t "b2m upload (snapshot, check, hash, send)" "$B2M" -C "$WORK/s3dev" upload big-db
project "$WORK/s3srv" "s3://bench/p"; rm "$WORK/s3srv/db/all_dbs/db.toml"
"$B2M" -C "$WORK/s3srv" -q fetch-db-toml
t "aws s3 cp (download)" aws --endpoint-url "$ENDPOINT" s3 cp --quiet s3://bench/awscli/big.db "$WORK/out/big.db"
t "b2m download (verify sha256 + quick_check)" "$B2M" -C "$WORK/s3srv" download big-db

echo
echo "lease acquisition (uncontended; median of 15, from b2m -v; one protocol on every bucket)"
lease_ms() { # lease_ms PROJECT  → median ms of the db lease
  for _ in $(seq 15); do "$B2M" -C "$1" -v upload big-db 2>&1 | grep -o 'lease="big-db".*ms=[0-9.]*' | grep -o 'ms=[0-9.]*' | cut -d= -f2; done | sort -n | sed -n 8p
}
printf '  %-44s %7.2f ms\n' "local folder" "$(lease_ms "$WORK/local")"
printf '  %-44s %7.2f ms\n' "s3s-fs on 127.0.0.1" "$(lease_ms "$WORK/s3dev")"
