#!/bin/sh
# make interop: compress and decompress model folders with bin/seedlm, then
# load every decompressed folder with scripts/interop.py (PyTorch + numpy
# from Debian: apt-get install -y python3-torch). The real stories260K from
# ../shared/data (a safetensors folder and a PyTorch one) when present, and
# testdata/torch/hf-sharded (sharded PyTorch) always. Work in out/interop/.
set -eu
BIN=${BIN:-bin/seedlm}
PY=${PY:-/usr/bin/python3}
OUT=out/interop
SHARED=../shared/data/stories260K
rm -rf "$OUT" && mkdir -p "$OUT"

run() { # NAME SOURCE_FOLDER
	echo "== $1"
	"$BIN" compress --quiet "$2" -o "$OUT/$1.seedlm"
	"$BIN" decompress --quiet "$OUT/$1.seedlm" -o "$OUT/$1.out"
	ls -l "$OUT/$1.seedlm"
	"$PY" scripts/interop.py "$2" "$OUT/$1.out"
}

if [ -d "$SHARED" ]; then
	mkdir -p "$OUT/st" "$OUT/pt"
	cp "$SHARED/stories260K.f32.safetensors" "$OUT/st/model.safetensors"
	cp "$SHARED/stories260K.pt" "$OUT/pt/pytorch_model.bin"
	cp "$SHARED/config.json" "$OUT/st/" && cp "$SHARED/config.json" "$OUT/pt/"
	run stories260K-safetensors "$OUT/st"
	run stories260K-pytorch "$OUT/pt"
else
	echo "skipping stories260K: $SHARED is absent (it exists beside the repository on the development machine only)"
fi
run hf-sharded testdata/torch/hf-sharded
