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
  # strongSwan as the IPsec peer (issue 9): charon, swanctl, kernel-libipsec (ESP in userspace: this kernel has
  # no ESP), and the openssl + gcm plugins (without them no ECP groups and no AES-GCM).
  "strongswan-charon:(test -x /usr/lib/ipsec/charon)"
  "strongswan-swanctl:swanctl"
  "libcharon-extra-plugins:(test -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so)"
  "libstrongswan-standard-plugins:(test -e /usr/lib/ipsec/plugins/libstrongswan-gcm.so)"
  # Debugging like a router (issue 13): the tools a network engineer runs against the edge, and the capture
  # readers the tests open tether's pcapng files with.
  "traceroute:(test -x /usr/sbin/traceroute)"
  "mtr-tiny:mtr"
  "iputils-tracepath:tracepath"
  "tshark:tshark"
  "tcpdump:(test -x /usr/bin/tcpdump)"
  # bench:lab's latency figures (issue 10): ping -i 0.01 through tether and through the kernel edge.
  "iputils-ping:ping"
  # The gateway's DNS answers (issue 12): a real DNS server in the lab's Internet (dnsmasq, run with its own
  # command line, no system service) and a real client in each site (dig).
  "dnsmasq-base:(test -x /usr/sbin/dnsmasq)"
  "bind9-dnsutils:dig"
  # bench:lab: USO off on the lab's Internet links, so its counters count datagrams (bench/lab.ts).
  "ethtool:(test -x /usr/sbin/ethtool)"
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
    # strongswan-starter's postinst would start a charon in the root namespace: policy-rc.d exit 101 forbids
    # any service start during this install (the lab starts its own charons, one per namespace).
    local had_policy=0
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ $had_policy = 1 ] || printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    local rc=$?
    [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
    return $rc
  fi
}
