# The RAM over HTTP headers (docs/ota.md) the mno and cms tests send as a
# device's agent when they drive an admin session by hand with curl.
# shellcheck disable=SC2034 # used by the tests that source this file
PROTO="X-Admin-Protocol: globalplatform-remote-admin/1.0"
# shellcheck disable=SC2034
CT_RSP="Content-Type: application/vnd.globalplatform.card-content-mgt-response;version=1.0"
