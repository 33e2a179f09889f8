#!/usr/bin/env bash
# One entry point for developers, CI and the README:
#   setup | demo | test | units | lint | sanity | integration | oldest | build | ee | changelog | solve | lab-up | lab-down | lab-status | lab-reset
#   dashboard (the web dashboard on the lab, http://127.0.0.1:8080)
# Everything it needs (Debian packages from bindep.txt and tests/bindep.txt, a venv from requirements.txt,
# the lint tools' venv from tests/lint/requirements.txt) it installs itself.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${ENTROPY_VENV:-$ROOT/.venv}
LINT_VENV=${ENTROPY_LINT_VENV:-$ROOT/.venv-lint}
TMP=$ROOT/.tmp
COLLECTIONS=$TMP/collections
COLLECTION_LINK=$COLLECTIONS/ansible_collections/entropy/cluster
export ENTROPY_LAB_DIR=${ENTROPY_LAB_DIR:-/var/tmp/entropy-lab}

say() { printf '\n== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "this step installs Debian packages and starts libvirtd in namespaces: run it as root (sudo bash tools/run.sh $*)"
}

debian_packages() {
  # Package names (lines tagged platform:dpkg, every profile) from the collection's bindep.txt (what
  # builds and runs libvirt-python) and tests/bindep.txt (the venv, the lab, the test tools).
  awk '!/^#/ && /platform:dpkg/ {print $1}' "$ROOT/bindep.txt" "$ROOT/tests/bindep.txt"
}

install_packages() {
  local missing=()
  for pkg in $(debian_packages); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them by hand (see bindep.txt, tests/bindep.txt)"
  need_root setup
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the services of prometheus and prometheus-libvirt-exporter when it installs them, listening on every
  # address of the machine: the lab runs its own on loopback (lab.py monitoring), so the ones just installed are stopped.
  if [ -d /run/systemd/system ]; then
    local unit
    for unit in prometheus prometheus-libvirt-exporter; do
      case " ${missing[*]} " in *" $unit "*) systemctl disable --now "$unit.service" >/dev/null 2>&1 || true ;; esac
    done
  fi
}

pick_python() {
  for py in "${ENTROPY_PYTHON:-}" python3 python3.12 python3.11; do
    [ -n "$py" ] || continue
    command -v "$py" >/dev/null || continue
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v "$py"; return; }
  done
  die "need Python >= 3.11 for ansible-core 2.19 (set ENTROPY_PYTHON=/path/to/python3.11)"
}

make_venv() {
  # make_venv DIR [extra pip requirement]: a venv from requirements.txt (+ the unit test requirements),
  # rebuilt only when the requirements change.
  local dir=$1 extra=${2:-}
  local stamp=$dir/.entropy-requirements
  local want
  want=$( (cat "$ROOT/requirements.txt" "$ROOT/tests/unit/requirements.txt"; echo "$extra") | sha256sum | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  say "creating the venv $dir"
  "$(pick_python)" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q -r "$ROOT/requirements.txt" -r "$ROOT/tests/unit/requirements.txt" ${extra:+"$extra"}
  echo "$want" > "$stamp"
}

make_lint_venv() {
  # The lint layer's tools in a venv of their own (their pins must not move the test venv),
  # rebuilt only when tests/lint/requirements.txt changes.
  local stamp=$LINT_VENV/.entropy-requirements
  local want
  want=$(sha256sum < "$ROOT/tests/lint/requirements.txt" | cut -d' ' -f1)
  if [ -x "$LINT_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  say "creating the lint venv $LINT_VENV"
  "$(pick_python)" -m venv "$LINT_VENV"
  "$LINT_VENV/bin/python" -m pip install -q --upgrade pip
  "$LINT_VENV/bin/python" -m pip install -q -r "$ROOT/tests/lint/requirements.txt"
  echo "$want" > "$stamp"
}

dashboard_deps() {
  # The web dashboard's packages (dashboard/requirements.txt) in the venv, installed again only when that file changes.
  local stamp=$VENV/.entropy-dashboard-requirements
  local want
  want=$(sha256sum < "$ROOT/dashboard/requirements.txt" | cut -d' ' -f1)
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  say "installing the dashboard's packages into $VENV"
  "$VENV/bin/python" -m pip install -q -r "$ROOT/dashboard/requirements.txt"
  echo "$want" > "$stamp"
}

eda_deps() {
  # ansible-rulebook for the event-driven loop (extensions/eda/requirements.txt) in the venv, installed again only when
  # that file changes. Its Java runtime is a Debian package of tests/bindep.txt.
  local stamp=$VENV/.entropy-eda-requirements
  local want
  want=$(sha256sum < "$ROOT/extensions/eda/requirements.txt" | cut -d' ' -f1)
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  say "installing ansible-rulebook into $VENV"
  "$VENV/bin/python" -m pip install -q -r "$ROOT/extensions/eda/requirements.txt"
  echo "$want" > "$stamp"
}

link_collection() {
  # Ansible finds collections only under .../ansible_collections/<namespace>/<name>.
  mkdir -p "$(dirname "$COLLECTION_LINK")"
  [ -L "$COLLECTION_LINK" ] || ln -sfn "$ROOT" "$COLLECTION_LINK"
}

setup() {
  install_packages
  make_venv "$VENV"
  dashboard_deps
  eda_deps
  make_lint_venv
  link_collection
}

activate() {
  export PATH=$VENV/bin:$PATH
  export ANSIBLE_COLLECTIONS_PATH=$COLLECTIONS
  export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
  export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
  export ANSIBLE_NOCOLOR=${ANSIBLE_NOCOLOR:-1}
  export ANSIBLE_STDOUT_CALLBACK=${ANSIBLE_STDOUT_CALLBACK:-default}
  export ANSIBLE_LOCALHOST_WARNING=false
  export ANSIBLE_INVENTORY_UNPARSED_WARNING=false
}

lab() { "$VENV/bin/python" "$ROOT/tools/lab.py" "$@"; }

units() {
  say "unit tests"
  # -rs lists skips; tests/unit/conftest.py fails any skip not on its short allow-list.
  local target=(tests/unit)
  for arg in "$@"; do case "$arg" in tests/*) target=() ;; esac; done
  (cd "$ROOT" && python -m pytest -q -rs -p no:cacheprovider "${target[@]}" "$@")
}

solve() {
  # The solver CLI with the venv's Python; paths stay relative to where the user runs this.
  "$VENV/bin/python" "$ROOT/tools/entropy_solve.py" "$@"
}

sanity() {
  say "ansible-test sanity"
  # ansible-test bootstraps its venvs with a get-pip script it cannot download here;
  # the offline stand-in (ensurepip + normal pip config) does the same job.
  local getpip=$ROOT/../shared/tools/get_pip_offline.py
  if [ -f "$getpip" ]; then
    mkdir -p ~/.ansible/test/cache
    for v in 24_2 25_0 25_1 25_3; do
      [ -f ~/.ansible/test/cache/get_pip_$v.py ] || cp "$getpip" ~/.ansible/test/cache/get_pip_$v.py
    done
  fi
  # ansible-test resolves symlinks and needs .../ansible_collections/entropy/cluster as the real path:
  # test a copy of exactly what git would ship (tracked + untracked-not-ignored files).
  local copy=$TMP/sanity/ansible_collections/entropy/cluster
  rm -rf "$TMP/sanity" && mkdir -p "$copy"
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$copy"
  # The copy sits inside this checkout, whose .gitignore hides .tmp/: give it a git index of its own.
  (cd "$copy" && git init -q && git add -A)
  local pyver
  pyver=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  (cd "$copy" && ansible-test sanity --venv --python "$pyver" --requirements --color no "$@")
}

oldest() {
  # The collection claims ansible-core >= 2.17 (meta/runtime.yml). There, unlike 2.19, a string in a
  # playbook is templated unless tagged !unsafe: the injection tests must pass on that version too.
  local oldest_venv=${ENTROPY_OLDEST_VENV:-$ROOT/.venv-oldest}
  local version
  version=$(sed -n 's/^requires_ansible: *"*>=\([0-9]*\.[0-9]*\).*/\1/p' "$ROOT/meta/runtime.yml")
  make_venv "$oldest_venv" "ansible-core==$version.*"
  say "injection tests on ansible-core $("$oldest_venv/bin/python" -c 'import ansible; print(ansible.__version__)') (the oldest this collection claims)"
  lab up
  (cd "$ROOT" && "$oldest_venv/bin/python" -m pytest -q -p no:cacheprovider -rs \
    -k "untemplated or template_code" \
    tests/unit/plugins/plugin_utils/test_plan_playbook.py tests/integration/test_consolidate.py)
}

integration() {
  say "integration tests (real libvirt lab)"
  lab up
  # A test file or directory given on the command line replaces the default folder, as pytest users expect.
  local target=(tests/integration) parallel=()
  for arg in "$@"; do case "$arg" in tests/*) target=() ;; esac; done
  # The whole suite runs its test files on ENTROPY_TEST_WORKERS (default 2) pytest-xdist workers, each on a
  # lab of its own (tests/integration/conftest.py: $ENTROPY_LAB_DIR-gwN): most of a lab test is waiting on
  # libvirt and QEMU, so two labs nearly halve the time on 2 cores. Files named on the command line run in one.
  local workers=${ENTROPY_TEST_WORKERS:-2}
  if [ ${#target[@]} -gt 0 ] && [ "$workers" -gt 1 ]; then
    # the slowest tests are printed: what the 30-minute CI budget is spent on
    parallel=(-n "$workers" --dist loadfile --durations=30)
  fi
  local rc=0
  (cd "$ROOT" && python -m pytest -q -p no:cacheprovider -rs "${parallel[@]}" "${target[@]}" "$@") || rc=$?
  if [ ${#parallel[@]} -gt 0 ]; then
    local n
    for ((n = 1; n < workers; n++)); do
      ENTROPY_LAB_DIR=$ENTROPY_LAB_DIR-gw$n lab down >/dev/null || true   # the extra workers' labs
    done
  fi
  return $rc
}

build() {
  say "collection build + install"
  local out=$TMP/build
  rm -rf "$out" && mkdir -p "$out"
  (cd "$ROOT" && ansible-galaxy collection build --force --output-path "$out" >/dev/null)
  ANSIBLE_COLLECTIONS_PATH=$out/installed ansible-galaxy collection install --force -p "$out/installed" "$out"/entropy-cluster-*.tar.gz >/dev/null
  ls "$out"/entropy-cluster-*.tar.gz
  # ansible-doc must read the docs of every plugin from the installed tarball.
  ANSIBLE_COLLECTIONS_PATH=$out/installed python "$ROOT/tools/check_docs.py"
}

shipped_copy() {
  # shipped_copy DIR: exactly what git would ship (tracked + untracked-not-ignored files) in DIR.
  rm -rf "$1" && mkdir -p "$1"
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$1"
}

lint_tools() { PATH=$LINT_VENV/bin:$PATH "$@"; }

lint() {
  # Galaxy and docs checks, each one clean or the layer fails: ansible-lint (production profile,
  # .ansible-lint), antsibull-docs and antsibull-changelog lint, galaxy-importer on the built
  # tarball (no error, no warning), the bindep selections, ansible-builder create.
  local out=$TMP/lint
  rm -rf "$out" && mkdir -p "$out"
  say "ansible-lint --profile production"
  # (it warns when told not to scan sys.path for collections; it needs none from there)
  (cd "$ROOT" && env -u ANSIBLE_COLLECTIONS_SCAN_SYS_PATH PATH="$LINT_VENV/bin:$PATH" ansible-lint --profile production --nocolor)
  say "antsibull-docs lint-collection-docs --plugin-docs"
  (cd "$ROOT" && lint_tools antsibull-docs lint-collection-docs --plugin-docs .)
  say "antsibull-changelog lint"
  (cd "$ROOT" && lint_tools antsibull-changelog lint && lint_tools antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml)
  say "galaxy-importer on the built tarball"
  local src=$out/src/ansible_collections/entropy/cluster
  shipped_copy "$src"
  if ! grep -q '^repository:' "$src/galaxy.yml"; then
    # Galaxy refuses a collection without `repository`; galaxy.yml has none until the project has a
    # public address (never a placeholder). The check runs on a copy that names this checkout.
    echo "note: galaxy.yml has no repository URL, which Galaxy requires to publish; checking with repository: file://$ROOT"
    echo "repository: file://$ROOT" >> "$src/galaxy.yml"
  fi
  (cd "$src" && lint_tools ansible-galaxy collection build --output-path "$out" >/dev/null)
  local tarball
  tarball=$(ls "$out"/entropy-cluster-*.tar.gz)
  # galaxy-importer runs ansible-doc and ansible-lint itself (from the lint venv, on PATH); the
  # Automation Hub setting that wants one of Galaxy's category tags is on too.
  (cd "$out" && GALAXY_IMPORTER_CHECK_REQUIRED_TAGS=true lint_tools python -m galaxy_importer.main "$tarball" > "$out/galaxy-importer.log" 2>&1) \
    || { cat "$out/galaxy-importer.log"; die "galaxy-importer failed"; }
  if grep -E '^(WARNING|ERROR)' "$out/galaxy-importer.log"; then
    die "galaxy-importer reported the lines above (full log: $out/galaxy-importer.log)"
  fi
  grep -c '^Loading' "$out/galaxy-importer.log" | sed 's/$/ contents loaded, no warning, no error/'
  say "bindep: the packages of each platform"
  lint_tools python "$ROOT/tools/check_bindep.py" "$ROOT/bindep.txt"
  ee "$tarball"
}

ee() {
  # ee [TARBALL]: the execution environment's build context (ansible-builder create) in .tmp/ee/context,
  # from tools/ee/execution-environment.yml and the collection tarball (built here when not given).
  # Building the image itself needs a container engine: podman build -t entropy-cluster-ee .tmp/ee/context
  local out=$TMP/ee tarball=${1:-}
  rm -rf "$out" && mkdir -p "$out"
  if [ -z "$tarball" ]; then
    shipped_copy "$out/src"
    (cd "$out/src" && lint_tools ansible-galaxy collection build --output-path "$out" >/dev/null)
    tarball=$(ls "$out"/entropy-cluster-*.tar.gz)
  fi
  say "ansible-builder create (execution environment build context)"
  cp "$ROOT"/tools/ee/* "$out/"
  cp "$tarball" "$out/entropy-cluster.tar.gz"
  (cd "$out" && lint_tools ansible-builder create -f execution-environment.yml -c context --output-filename Containerfile >/dev/null)
  [ -s "$out/context/Containerfile" ] || die "ansible-builder create wrote no Containerfile"
  grep -q 'ssh_config.d/60-entropy-cluster.conf' "$out/context/Containerfile" || die "the Containerfile does not install the SSH client configuration"
  # What the image's builder stage will read from the installed collection (its
  # meta/execution-environment.yml): the Python requirements and bindep entries.
  mkdir -p "$out/installed"
  ANSIBLE_COLLECTIONS_PATH=$out/installed lint_tools ansible-galaxy collection install --force -p "$out/installed" "$out/entropy-cluster.tar.gz" >/dev/null
  lint_tools python "$out/context/_build/scripts/introspect.py" introspect "$out/installed" > "$out/introspect.txt"
  local want
  for want in libvirt-python ortools 'libvirt-devel \[platform:rpm compile\]' 'libvirt-libs \[platform:rpm\]' 'openssh-clients \[platform:rpm\]'; do
    grep -q "$want" "$out/introspect.txt" || { cat "$out/introspect.txt"; die "the image would lack '$want' (introspection of the installed collection)"; }
  done
  echo "build context: $out/context (Containerfile; build it with podman build or docker build)"
}

changelog() {
  # Fold the fragments into the release named by galaxy.yml's version (new, or already in
  # changelogs/changelog.yaml while unpublished). After publishing, raise the version first.
  say "antsibull-changelog release"
  (cd "$ROOT" && ANSIBLE_COLLECTIONS_PATH=$COLLECTIONS lint_tools antsibull-changelog release --update-existing)
}

dashboard() {
  # The web dashboard on the lab (docs/dashboard.md). Users live in $ENTROPY_LAB_DIR/dashboard-users.json: the first
  # start adds the operator 'admin' with the password in $ENTROPY_DASHBOARD_PASSWORD (or a new one, printed once).
  lab up
  local users=$ENTROPY_LAB_DIR/dashboard-users.json
  if [ ! -f "$users" ]; then
    local password=${ENTROPY_DASHBOARD_PASSWORD:-}
    [ -n "$password" ] || { password=$(python -c 'import secrets; print(secrets.token_urlsafe(12))'); echo "dashboard user admin, password $password"; }
    (cd "$ROOT" && ENTROPY_DASHBOARD_PASSWORD=$password python -m dashboard adduser --users "$users" admin --role operator)
  fi
  # The lab's disks sit on a directory every lab host sees, which libvirt cannot detect as shared: --migrate-unsafe.
  (cd "$ROOT" && exec python -m dashboard serve -i "$ENTROPY_LAB_DIR/lab.libvirt_cluster.yml" --users "$users" \
    --audit-log "$ENTROPY_LAB_DIR/dashboard-audit.log" --migrate-unsafe --port "${ENTROPY_DASHBOARD_PORT:-8080}" "$@")
}

demo() {
  local start=$SECONDS
  say "bringing the lab up (real libvirtd hypervisors in namespaces, tiny TCG VMs)"
  lab up
  lab reset
  say "the cluster before"
  lab status
  say "consolidating: inventory -> solver -> plan -> live migrations"
  ansible-playbook -i "$ENTROPY_LAB_DIR/lab.libvirt_cluster.yml" entropy.cluster.consolidate \
    -e entropy_lock_file="$ENTROPY_LAB_DIR/consolidate.lock" "$@"
  say "the cluster after"
  lab status
  say "demo done in $((SECONDS - start)) s (lab: bash tools/run.sh lab-status | lab-reset | lab-down)"
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) setup ;;
  demo) need_root demo; setup; activate; demo "$@" ;;
  test)
    need_root test; setup; activate
    # The unit tests run on two pytest-xdist workers beside lint, sanity and build (each is one process at a time);
    # the oldest layer (its venv, the lab's start, a few lab tests: mostly waiting) beside them too. Their output
    # is shown when they end. Then the integration layer, on the lab the oldest layer has started.
    mkdir -p "$TMP"
    start=$SECONDS
    units -n 2 > "$TMP/units.log" 2>&1 &   # two xdist workers: the unit tests were the static block's longest lane
    units_pid=$!
    oldest > "$TMP/oldest.log" 2>&1 &
    oldest_pid=$!
    # Each layer runs as a plain command, so that `set -e` stops at its first failing step (inside `a || b`
    # bash ignores -e in a: a failing ansible-lint went unnoticed that way); the background layers stop with us.
    trap 'kill "$units_pid" "$oldest_pid" 2>/dev/null || true' EXIT
    for layer in lint sanity build; do
      "$layer"
    done
    units_rc=0
    wait "$units_pid" || units_rc=$?
    cat "$TMP/units.log"
    [ "$units_rc" = 0 ] || die "the unit tests failed"
    oldest_rc=0
    wait "$oldest_pid" || oldest_rc=$?
    trap - EXIT
    cat "$TMP/oldest.log"
    [ "$oldest_rc" = 0 ] || die "the oldest layer failed (the injection tests on the oldest ansible-core the collection claims)"
    echo "-- units, lint, sanity, build, oldest: $((SECONDS - start)) s"
    start=$SECONDS
    integration
    echo "-- integration layer: $((SECONDS - start)) s"
    say "all test layers passed in $SECONDS s" ;;
  units) setup; activate; units "$@" ;;
  lint) setup; activate; lint ;;
  ee) setup; activate; ee ;;
  changelog) setup; activate; changelog ;;
  sanity) setup; activate; sanity "$@" ;;
  integration) need_root integration; setup; activate; integration "$@" ;;
  oldest) need_root oldest; setup; activate; oldest ;;
  build) setup; activate; build ;;
  solve) setup >&2; solve "$@" ;;   # stdout carries the plan JSON when there is no -o
  lab-up) need_root lab-up; setup; activate; lab up "$@" ;;
  lab-down) need_root lab-down; setup; lab down "$@" ;;
  lab-status) setup; lab status "$@" ;;
  lab-reset) need_root lab-reset; setup; lab reset "$@" ;;
  dashboard) need_root dashboard; setup; activate; dashboard "$@" ;;
  help|-h|--help) sed -n '2,6p' "$0" ;;
  *) die "unknown command '$cmd' (try: setup demo test units lint sanity integration build ee changelog solve lab-up lab-down lab-status lab-reset dashboard)" ;;
esac
