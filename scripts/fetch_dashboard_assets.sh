#!/usr/bin/env bash
# Re-fetch the dashboard's vendored front-end libraries at their pinned versions from the npm
# registry (`npm pack`, no node_modules, no build step) and copy their dist files and licences
# into routeyard/api/dashboard_assets/vendor/. Bump a version here, run it, commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."

PREACT=11.2.0
HTM=3.1.1
UPLOT=1.6.32

dest=routeyard/api/dashboard_assets/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

unpack() {  # name version → $work/name/package
  (cd "$work" && npm pack --silent "$1@$2" >/dev/null)
  mkdir -p "$work/$1"
  tar xzf "$work/$1-$2.tgz" -C "$work/$1"
}

unpack preact "$PREACT"
unpack htm "$HTM"
unpack uplot "$UPLOT"

rm -rf "$dest" && mkdir -p "$dest"
# Browsers need relative specifiers without an import map: hooks imports the bare "preact".
# Source-map comments are dropped because the maps are not shipped.
sed -e 's#//\# sourceMappingURL=.*##' "$work/preact/package/dist/preact.mjs" > "$dest/preact.mjs"
sed -e 's#from"preact"#from"./preact.mjs"#g' -e 's#//\# sourceMappingURL=.*##' \
  "$work/preact/package/hooks/dist/hooks.mjs" > "$dest/preact-hooks.mjs"
cp "$work/htm/package/dist/htm.module.js" "$dest/htm.mjs"
cp "$work/uplot/package/dist/uPlot.esm.js" "$dest/uPlot.mjs"
cp "$work/uplot/package/dist/uPlot.min.css" "$dest/uPlot.min.css"
cp "$work/preact/package/LICENSE" "$dest/LICENSE.preact"
cp "$work/htm/package/LICENSE" "$dest/LICENSE.htm"
cp "$work/uplot/package/LICENSE" "$dest/LICENSE.uplot"
cat > "$dest/VERSIONS" <<END
preact $PREACT (MIT) dist/preact.mjs, hooks/dist/hooks.mjs
htm $HTM (Apache-2.0) dist/htm.module.js
uplot $UPLOT (MIT) dist/uPlot.esm.js, dist/uPlot.min.css
END
grep -q 'from"preact"' "$dest/preact-hooks.mjs" && { echo "hooks still imports 'preact'" >&2; exit 1; }
echo "vendored into $dest:"
ls -l "$dest"
