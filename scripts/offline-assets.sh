#!/usr/bin/env bash
# Puts the JavaScript the built book needs into _offline/ (git-ignored), so that the HTML
# reads with no network: MathJax 3 (typesets the maths), the ipywidgets HTML manager
# (shows widgets from their saved state) and RequireJS (which that manager needs).
# The Sphinx build copies _offline/ into _build/html/_static/ (html_static_path in _config.yml).
#
# The packages come from the npm registry with `npm pack` (one tarball each, no
# node_modules tree). Without npm, or when the registry cannot be reached, the script writes
# small loader files instead that fetch the same versions from a CDN: the book then still
# builds and reads, but needs the network for maths and widgets. _offline/SOURCE says which.
# Usage: scripts/offline-assets.sh [--force]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/_offline"
mathjax=3.2.2
html_manager=1.0.15
requirejs=2.3.8
setup_version=1  # bump when write_widget_setup changes
want="setup $setup_version, npm: mathjax@$mathjax @jupyter-widgets/html-manager@$html_manager requirejs@$requirejs"

if [ "${1:-}" != "--force" ] && [ -f "$out/SOURCE" ] && [ "$(cat "$out/SOURCE")" = "$want" ]; then
  echo "== offline assets: up to date in _offline/ ($want)"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

write_widget_setup() {
  # Runs after RequireJS and before the widget manager (see nb_ipywidgets_js in _config.yml).
  cat > "$1" <<'EOF_JS'
// Set-up of the ipywidgets HTML manager for the book (written by scripts/offline-assets.sh).
(function () {
  // 1. The manager finds its icon fonts next to the files of its AMD modules: map those
  //    modules to this folder, so that the fonts load from the book's own static files.
  var src = document.currentScript && document.currentScript.src;
  var here = src ? src.slice(0, src.lastIndexOf("/")) : "";
  if (window.require && window.require.config && here) {
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": here, "@jupyter-widgets": here } });
  }
  // 2. The manager typesets widget labels with the MathJax 2 call
  //    MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book loads MathJax 3,
  //    which has no Hub. Give it one that typesets the element with MathJax 3.
  function installHub() {
    var mj = window.MathJax;
    if (!mj || !mj.version || mj.Hub) return;
    mj.Hub = {
      Queue: function (job) {
        var element = Array.isArray(job) ? job[2] : undefined;
        mj.startup.promise
          .then(function () { return mj.typesetPromise(element ? [element] : undefined); })
          .catch(function (err) { console.warn("MathJax could not typeset a widget:", err); });
      },
    };
  }
  installHub();
  // Deferred scripts (MathJax) have run by DOMContentLoaded; the widgets render after it.
  document.addEventListener("DOMContentLoaded", installHub);
})();
EOF_JS
}

fetch_from_npm() {
  command -v npm >/dev/null 2>&1 || { echo "npm is not installed"; return 1; }
  (cd "$tmp" && npm pack --silent --loglevel=error "mathjax@$mathjax" \
    "@jupyter-widgets/html-manager@$html_manager" "requirejs@$requirejs" >/dev/null) || return 1
  local pkg
  for pkg in mathjax html-manager requirejs; do
    mkdir -p "$tmp/$pkg"
    tar -xzf "$tmp"/*"$pkg"-*.tgz -C "$tmp/$pkg"
  done
  local stage="$tmp/stage" es5="$tmp/mathjax/package/es5" dist="$tmp/html-manager/package/dist"
  mkdir -p "$stage/mathjax/output" "$stage/widgets"
  # MathJax: the TeX-to-HTML component and what it loads on demand (TeX extensions, fonts,
  # the menu, the accessibility tools); the other output formats are left out.
  cp "$es5"/{tex-chtml.js,core.js,loader.js,startup.js} "$stage/mathjax/"
  cp -r "$es5"/{input,a11y,ui,adaptors,sre} "$stage/mathjax/"
  cp -r "$es5/output/chtml" "$es5/output/chtml.js" "$stage/mathjax/output/"
  # The widget manager for pages with RequireJS, and the icon fonts its CSS points to.
  cp "$dist/embed-amd.js" "$stage/widgets/"
  cp "$dist"/*.woff2 "$dist"/*.woff "$dist"/*.ttf "$dist"/*.eot "$dist"/*.svg "$stage/widgets/"
  cp "$tmp/requirejs/package/require.js" "$stage/widgets/require.js"
  write_widget_setup "$stage/widgets/setup.js"
  cp "$tmp/mathjax/package/LICENSE" "$stage/mathjax/LICENSE"
  echo "$want" > "$stage/SOURCE"
  rm -rf "$out"
  mv "$stage" "$out"
}

write_cdn_loaders() {
  # Same file names as the npm layout, so _config.yml does not change; each loads from a CDN.
  local cdn=https://cdn.jsdelivr.net/npm
  rm -rf "$out"
  mkdir -p "$out/mathjax" "$out/widgets"
  cat > "$out/mathjax/tex-chtml.js" <<EOF
// Offline copy missing (scripts/offline-assets.sh could not use npm): load MathJax from a CDN.
(function () {
  var s = document.createElement("script");
  s.src = "$cdn/mathjax@$mathjax/es5/tex-chtml.js";
  s.async = true;
  document.head.appendChild(s);
})();
EOF
  echo "// RequireJS is loaded from a CDN by widgets/embed-amd.js (no offline copy)." > "$out/widgets/require.js"
  cat > "$out/widgets/embed-amd.js" <<EOF
// Offline copy missing (scripts/offline-assets.sh could not use npm): load RequireJS and
// the widget manager from a CDN, in that order.
(function () {
  function load(src, then) {
    var s = document.createElement("script");
    s.src = src;
    s.onload = then;
    document.head.appendChild(s);
  }
  load("$cdn/requirejs@$requirejs/require.js", function () {
    var dist = "$cdn/@jupyter-widgets/html-manager@$html_manager/dist";
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": dist, "@jupyter-widgets": dist } });
    load(dist + "/embed-amd.js");
  });
})();
EOF
  write_widget_setup "$out/widgets/setup.js"
  echo "setup $setup_version, cdn: mathjax@$mathjax @jupyter-widgets/html-manager@$html_manager requirejs@$requirejs" > "$out/SOURCE"
}

if fetch_from_npm; then
  echo "== offline assets: installed from npm into _offline/ ($(du -sh "$out" | cut -f1))"
else
  write_cdn_loaders
  echo "== offline assets: npm unavailable; wrote CDN loaders into _offline/ (the book will need the network)" >&2
fi
