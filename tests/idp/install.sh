#!/bin/sh
# Installs the test OpenID provider (oidc-provider, pinned by package-lock.json)
# into target/idp of the checkout, from the npm registry: tests start it from
# there. Idempotent: nothing happens when the installed lock file is the same.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest="${GATEHOUSE_IDP_DIR:-$root/target/idp}"
mkdir -p "$dest"
if [ -f "$dest/node_modules/.package-lock.json" ] && cmp -s "$here/package-lock.json" "$dest/package-lock.json" \
   && cmp -s "$here/provider.mjs" "$dest/provider.mjs"; then
  exit 0
fi
cp "$here/package.json" "$here/package-lock.json" "$here/provider.mjs" "$dest/"
cd "$dest"
npm ci --no-audit --no-fund --loglevel=error
