#!/usr/bin/env bash
# Install the browser assets pinned in package-lock.json and copy the files
# that telerad serves into its static folder. Without them the pages still
# work, unstyled. After changing a version in package.json, run
# `npm install` here first so that the lock file follows.
set -euo pipefail

frontend_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
vendor_dir="$frontend_dir/../src/telerad/core/static/vendor"

cd "$frontend_dir"
npm ci --no-audit --no-fund

mkdir -p "$vendor_dir"
cp node_modules/@picocss/pico/css/pico.min.css "$vendor_dir/pico.min.css"
cp node_modules/htmx.org/dist/htmx.min.js "$vendor_dir/htmx.min.js"
echo "Copied pico.min.css and htmx.min.js to $(cd -- "$vendor_dir" && pwd)"
