#!/usr/bin/env bash
# Tuning runs for the S3 part size and parts in flight (uploads), and the stretch size and
# stretches in flight (downloads): a 1 GiB database against s3s-fs on 127.0.0.1, each setting in
# turn, 3 rounds; prints seconds per run. Settings: UPLOAD_CFGS="16x4 32x4" (MiB x in flight),
# DOWNLOAD_CFGS="8x8 16x8".
# Needs `cargo build --release --bin b2m --example s3-server` first. Results: docs/decisions.md.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B2M_BIN:-$(pwd)/target/release/b2m}
W=$(mktemp -d /tmp/b2m-tune.XXXXXX)
export B2M_ACCESS_KEY_ID=k B2M_SECRET_ACCESS_KEY=s
PORT=$(python3 -c "import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])")
mkdir -p $W/s3/bench
target/release/examples/s3-server $W/s3 $PORT k s 2>/dev/null & SP=$!
trap 'kill $SP; rm -rf $W' EXIT
sleep 0.5
proj() { mkdir -p $1/db/all_dbs; printf '[remote]\nurl = "s3://bench/p"\nendpoint = "http://127.0.0.1:%s"\nregion = "us-east-1"\n' $PORT > $1/b2m.toml; printf '[db]\nbigdb = "big-db-v1.db"\npath = "%s/db/all_dbs/"\n' $1 > $1/db/all_dbs/db.toml; }
proj $W/dev
python3 - $W/dev/db/all_dbs/big-db-v1.db <<'PY'
import os, sqlite3, sys, random
conn = sqlite3.connect(sys.argv[1]); conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, b BLOB)"); conn.execute("CREATE INDEX tn ON t(name)")
conn.executemany("INSERT INTO t(name, b) VALUES (?, ?)", ((f"n{random.random()}", os.urandom(3800)) for _ in range(262144))); conn.commit()
PY
$B -C $W/dev -q upload big-db
echo "== upload (PART_SIZE_MIB PARTS_IN_FLIGHT: seconds)"
for round in 1 2 3; do
  for cfg in ${UPLOAD_CFGS:-16x4 16x8 32x4 32x8}; do
    IFS=x read -r size flight <<< "$cfg"; set -- "$size" "$flight"
    f=$(ls $W/dev/db/all_dbs/*.db); python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('insert into t(name) values (\'x\')'); c.commit()" $f
    s=$(date +%s.%N); B2M_PART_SIZE_MIB=$1 B2M_PARTS_IN_FLIGHT=$2 $B -C $W/dev -q upload big-db; e=$(date +%s.%N)
    echo "up $1x$2 $(echo "$e - $s" | bc)"
  done
done
echo "== download (STRETCH_MIB STRETCHES_IN_FLIGHT: seconds)"
for round in 1 2 3; do
  for cfg in ${DOWNLOAD_CFGS:-8x8 8x16 16x8 4x16}; do
    IFS=x read -r size flight <<< "$cfg"; set -- "$size" "$flight"
    rm -rf $W/srv; proj $W/srv; rm $W/srv/db/all_dbs/db.toml; $B -C $W/srv -q fetch-db-toml
    s=$(date +%s.%N); B2M_STRETCH_MIB=$1 B2M_STRETCHES_IN_FLIGHT=$2 $B -C $W/srv -q download big-db; e=$(date +%s.%N)
    echo "down $1x$2 $(echo "$e - $s" | bc)"
  done
done
