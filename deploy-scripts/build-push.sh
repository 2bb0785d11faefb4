#!/usr/bin/env bash
# Builds the two images (Dockerfile.chatbot -> chatbot-webapp, Dockerfile.ragapi -> chatbot-ragapi)
# and pushes them with a pinned tag (default: the git commit). Creates the ECR repositories
# (immutable tags, scan on push) when missing; a tag that is already pushed is not pushed again.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<'USAGE'
Usage: deploy-scripts/build-push.sh [--dry-run]

Required environment: AWS_REGION. Optional: IMAGE_TAG (default: git commit, refused when the
working tree is dirty unless ALLOW_DIRTY=1), IMAGE_REGISTRY (default: ECR of the account,
ACCOUNT.dkr.ecr.REGION.amazonaws.com/tenant-rag), PLATFORM (linux/amd64).
USAGE
}

ecr_login() { # ecr_login REGISTRY_HOST
  aws ecr get-login-password --region "${AWS_REGION}" | docker login --username AWS --password-stdin "$1"
}

main() {
  parse_common "$@"
  ((${#ARGS[@]} == 0)) || { usage; die "unexpected arguments: ${ARGS[*]}"; }
  : "${AWS_REGION:?set AWS_REGION, e.g. eu-west-1}"
  : "${PLATFORM:=linux/amd64}"
  require_cmd aws docker git
  if [[ -z "${IMAGE_TAG:-}" ]]; then
    IMAGE_TAG="$(git -C "${REPO_ROOT}" rev-parse --short=12 HEAD)"
    if [[ -n "$(git -C "${REPO_ROOT}" status --porcelain --untracked-files=no)" && "${ALLOW_DIRTY:-0}" != 1 ]]; then
      die "uncommitted changes: commit first or set IMAGE_TAG (and ALLOW_DIRTY=1)"
    fi
  fi
  check_value IMAGE_TAG '^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$' "a Docker tag that is also a label value (max 63)"
  [[ "${IMAGE_TAG}" != latest ]] || die "IMAGE_TAG=latest is not a pinned tag"
  resolve_account
  : "${IMAGE_REGISTRY:=${ACCOUNT_ID}.dkr.ecr.${AWS_REGION}.amazonaws.com/tenant-rag}"
  local host=${IMAGE_REGISTRY%%/*} prefix="" name dockerfile repo
  local ecr=0
  if [[ "${host}" == *.dkr.ecr.*.amazonaws.com ]]; then
    ecr=1
    if [[ "${IMAGE_REGISTRY}" == */* ]]; then prefix="${IMAGE_REGISTRY#*/}/"; fi
    run ecr_login "${host}"
  fi
  for name in chatbot-webapp chatbot-ragapi; do
    case ${name} in
      chatbot-webapp) dockerfile=Dockerfile.chatbot ;;
      chatbot-ragapi) dockerfile=Dockerfile.ragapi ;;
    esac
    repo="${prefix}${name}"
    if ((ecr)); then
      if ! exists aws ecr describe-repositories --repository-names "${repo}" --region "${AWS_REGION}"; then
        run aws ecr create-repository --repository-name "${repo}" --region "${AWS_REGION}" \
          --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true \
          --encryption-configuration encryptionType=AES256
      fi
      if exists aws ecr describe-images --repository-name "${repo}" --image-ids "imageTag=${IMAGE_TAG}" \
        --region "${AWS_REGION}"; then
        log "${repo}:${IMAGE_TAG} is already pushed"
        continue
      fi
    fi
    run docker build --pull --platform "${PLATFORM}" -f "${REPO_ROOT}/${dockerfile}" \
      --label "org.opencontainers.image.revision=${IMAGE_TAG}" \
      -t "${IMAGE_REGISTRY}/${name}:${IMAGE_TAG}" "${REPO_ROOT}"
    run docker push "${IMAGE_REGISTRY}/${name}:${IMAGE_TAG}"
  done
  log "pushed ${IMAGE_REGISTRY}/{chatbot-webapp,chatbot-ragapi}:${IMAGE_TAG}; deploy with IMAGE_TAG=${IMAGE_TAG}"
}

main "$@"
