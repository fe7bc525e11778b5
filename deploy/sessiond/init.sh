#!/usr/bin/env bash
# One-shot set-up of the compose demo (the `init` service), run in the sessiond image.
#
# Mints three caller credentials with `sessiond credential` the first time it runs (so no
# credential is ever committed to the repository), writes the callers file that every sessiond
# replica mounts, and renders the Envoy configuration with the gateway's credential. Later runs
# keep what the volumes already hold, so credentials survive `docker compose down` / `up`
# (`docker compose down -v` starts over).
#
#   gateway  validator  Envoy's ext_authz calls (Authorization/Check)
#   login    issuer     Issue and Refresh, for trying the demo by hand
#   ops      admin      the Admin* RPCs
#
# Environment (set by deploy/docker-compose.yml):
#   SESSIOND_CONFIG_DIR  volume shared with sessiond: callers.toml, credentials.env
#   ENVOY_TEMPLATE       deploy/envoy/envoy.yaml, mounted read-only
#   ENVOY_CONFIG_DIR     volume shared with Envoy: envoy.yaml
#   SESSIOND_UID         the UID sessiond runs as (owner of the callers file)
set -euo pipefail

conf_dir=${SESSIOND_CONFIG_DIR:-/etc/sessiond}
template=${ENVOY_TEMPLATE:-/deploy/envoy.yaml}
envoy_dir=${ENVOY_CONFIG_DIR:-/etc/envoy-gen}
uid=${SESSIOND_UID:-10001}
callers="$conf_dir/callers.toml"
credentials="$conf_dir/credentials.env"
placeholder="__SESSIOND_GATEWAY_CREDENTIAL__"

umask 077
mkdir -p "$conf_dir" "$envoy_dir"

if [[ -s "$callers" && -s "$credentials" ]]; then
  echo "init: keeping the callers and credentials minted earlier ($callers)"
else
  tmp_callers="$callers.tmp"
  tmp_credentials="$credentials.tmp"
  : >"$tmp_callers"
  : >"$tmp_credentials"
  # name, roles, variable name in credentials.env
  for spec in "gateway validator GATEWAY_CREDENTIAL" \
              "login issuer LOGIN_CREDENTIAL" \
              "ops admin OPS_CREDENTIAL"; do
    read -r name roles var <<<"$spec"
    out=$(sessiond credential --name "$name" --roles "$roles")
    credential=$(sed -n 's/^#   authorization: Bearer //p' <<<"$out")
    if [[ ! "$credential" =~ ^[A-Za-z0-9_-]+$ ]]; then
      echo "init: unexpected output from 'sessiond credential' for $name" >&2
      exit 1
    fi
    grep -v '^#' <<<"$out" >>"$tmp_callers"
    echo >>"$tmp_callers"
    echo "$var=$credential" >>"$tmp_credentials"
  done
  mv "$tmp_callers" "$callers"
  mv "$tmp_credentials" "$credentials"
  echo "init: minted credentials for gateway, login and ops"
fi

# sessiond (non-root) reads the callers file; credentials.env stays root's (the demo operator's).
chown "$uid:$uid" "$callers"
chmod 0400 "$callers" "$credentials"

gateway=$(sed -n 's/^GATEWAY_CREDENTIAL=//p' "$credentials")
if [[ ! "$gateway" =~ ^[A-Za-z0-9_-]+$ ]]; then
  echo "init: $credentials holds no GATEWAY_CREDENTIAL" >&2
  exit 1
fi
if ! grep -q "$placeholder" "$template"; then
  echo "init: $template lacks the $placeholder placeholder" >&2
  exit 1
fi
sed "s/$placeholder/$gateway/" "$template" >"$envoy_dir/envoy.yaml.tmp"
# Envoy runs as its own non-root user: the file must be world-readable inside its volume.
chmod 0444 "$envoy_dir/envoy.yaml.tmp"
chmod 0755 "$envoy_dir"
mv "$envoy_dir/envoy.yaml.tmp" "$envoy_dir/envoy.yaml"
echo "init: wrote $envoy_dir/envoy.yaml"
echo "init: the login and ops credentials are in $credentials; print them with"
echo "init:   docker compose -f deploy/docker-compose.yml run --rm --no-deps --entrypoint cat init $credentials"
