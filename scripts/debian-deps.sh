# Debian packages tether's tests and lab use, installed only when missing (sourced by .ci/run and
# scripts/quickstart.sh). --no-install-recommends: wireguard-go's recommends pull in systemd and a
# kernel image, none of which the lab needs.

# "package:check" pairs; a check is a command name, or a shell test in parentheses.
TETHER_DEBIAN_DEPS=(
  "iproute2:ip"
  "wireguard-go:wireguard-go"
  "wireguard-tools:wg"
  "python3-scapy:(/usr/bin/python3 -c 'import scapy' >/dev/null 2>&1)"
  "iperf3:iperf3"
  "nftables:nft"
  "chromium:chromium"
  "curl:curl"
  "openssl:openssl"
)

install_missing_debian_packages() {
  local missing=() entry pkg check
  for entry in "${TETHER_DEBIAN_DEPS[@]}"; do
    pkg=${entry%%:*}
    check=${entry#*:}
    if [[ $check == \(* ]]; then
      eval "$check" || missing+=("$pkg")
    else
      command -v "$check" >/dev/null 2>&1 || missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}
