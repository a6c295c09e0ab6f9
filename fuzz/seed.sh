#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the real-data corpus ($CERTSTREAM_CORPUS, default
# ../shared/corpus beside the repository) and from fuzz/seeds/ (inputs written for the
# fuzzer: HTTP requests, websocket frames, checkpoints signed with the checkpoint target's
# keys). fuzz/corpus is git-ignored: nothing from the corpus is ever committed.
# Safe to run again: files are named by content, so nothing is duplicated.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
corpus="${CERTSTREAM_CORPUS:-$here/../../shared/corpus}"
out="$here/corpus"
targets=(leaf cert_json get_entries tile checkpoint http_request ws_client_frames ws_deflate_frames)
for t in "${targets[@]}"; do mkdir -p "$out/$t"; done

for t in checkpoint http_request ws_client_frames ws_deflate_frames; do
  cp "$here/seeds/$t"/* "$out/$t/"
done

if [ ! -d "$corpus/certs" ]; then
  echo "seed.sh: no corpus at $corpus (set CERTSTREAM_CORPUS); only fuzz/seeds used" >&2
  exit 0
fi

# Certificates as they are; checkpoints (the log's and its witnesses' cosigned ones).
cp "$corpus"/certs/*.der "$out/cert_json/"
find "$corpus/static-ct" -name checkpoint -type f | while read -r f; do
  cp "$f" "$out/checkpoint/real-$(sha1sum "$f" | cut -c1-16)"
done

# get-entries bodies, leaves and tiles are cut into small inputs (a few KB each) so that
# libFuzzer's maximum input length, taken from the largest seed, stays small and fast.
python3 - "$corpus" "$out" <<'PY'
import base64, glob, hashlib, json, os, struct, sys

corpus, out = sys.argv[1], sys.argv[2]

def put(target, data):
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)

# get-entries: the small real bodies whole; from the large ones, one- and three-entry bodies.
# leaf: every entry as u16 length + MerkleTreeLeaf + extra_data (the leaf target's input).
for path in sorted(glob.glob(os.path.join(corpus, "get-entries", "*.json"))):
    raw = open(path, "rb").read()
    entries = json.loads(raw)["entries"]
    if len(raw) <= 64 << 10:
        put("get_entries", raw)
    else:
        for i in range(0, 24, 3):
            put("get_entries", json.dumps({"entries": entries[i:i + 1]}).encode())
            put("get_entries", json.dumps({"entries": entries[i:i + 3]}, indent=1).encode())
    for e in entries[:64]:
        leaf = base64.b64decode(e["leaf_input"])
        extra = base64.b64decode(e["extra_data"])
        if len(leaf) < 1 << 16:
            put("leaf", struct.pack(">H", len(leaf)) + leaf + extra)

# static-ct data tiles: single TileLeafs (width byte 0) and every small partial tile whole
# (width byte = entries - 1).
def split_tile(body):
    leaves, i = [], 0
    def vec(n):
        nonlocal i
        size = int.from_bytes(body[i:i + n], "big")
        i += n + size
    while i < len(body):
        start = i
        i += 8
        kind = int.from_bytes(body[i:i + 2], "big")
        i += 2
        if kind == 0:
            vec(3)
        else:
            i += 32
            vec(3)
        vec(2)
        if kind == 1:
            vec(3)
        vec(2)
        leaves.append(body[start:i])
    return leaves

tiles = os.path.join(corpus, "static-ct", "**", "tile", "data", "**")
for path in sorted(glob.glob(tiles, recursive=True)):
    if not os.path.isfile(path):
        continue
    body = open(path, "rb").read()
    leaves = split_tile(body)
    for l in leaves[:24]:
        put("tile", b"\x00" + l)
    if len(body) <= 64 << 10 and 1 <= len(leaves) <= 256:
        put("tile", bytes([len(leaves) - 1]) + body)
for p in ["000", "003.p/10", "x001/x234/067", "x123/456.p/255"]:
    put("tile", p.encode())
PY
for t in "${targets[@]}"; do
  printf '%-18s %5d seeds\n' "$t" "$(find "$out/$t" -type f | wc -l)"
done
