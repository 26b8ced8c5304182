#!/usr/bin/env bash
# Captures what strongSwan 5.9.8 derives in real IKEv2 exchanges, for crypto-strongswan.test.ts:
# two charons (ikc-a initiates, ikc-b responds) in their own namespaces, ESP by kernel-libipsec as in
# /work/shared/peers/strongswan-peer.sh, charon logging at "ike 4, chd 4" (SKEYSEED, g^ir, SK_*, child
# KEYMAT seeds and keys), tcpdump on the link. Per profile: IKE_SA_INIT + IKE_AUTH, a child rekey
# (CREATE_CHILD_SA with PFS), an IKE SA rekey, a delete.
#
#   strongswan-keys.sh OUTDIR        (root) writes OUTDIR/<profile>/{ikc-a.log,ikc-b.log,link.pcap}
#   /usr/bin/python3 strongswan-keys.py OUTDIR > strongswan-keys.json
#
# Namespaces and links are prefixed ikc- (nothing else uses that prefix); leftovers are removed first.
set -euo pipefail
OUT=${1:?usage: strongswan-keys.sh OUTDIR}
CHARON=/usr/lib/ipsec/charon
NS_A=ikc-a NS_B=ikc-b IF_A=ikc-a-v0 IF_B=ikc-b-v0
OUT_A=192.168.251.1 OUT_B=192.168.251.2 LAN_A=10.51.1.1 LAN_B=10.51.2.1
PSK=lab-only-psk-0123456789abcdef
# name: IKE proposal | ESP proposal (its DH group is the PFS group of the child rekey)
PROFILES=(
  "gcm-ecp256|aes256gcm16-prfsha256-ecp256|aes128gcm16-ecp256"
  "cbc-modp2048|aes256-sha256-prfsha384-modp2048|aes256-sha256-modp2048"
  "gcm-x25519|aes128gcm16-prfsha512-curve25519|aes256gcm16-curve25519"
  "cbc-ecp384|aes128-sha512-prfsha256-ecp384|aes256-sha384-ecp384"
)
for p in "$CHARON" /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so /usr/lib/ipsec/plugins/libstrongswan-openssl.so; do
  [ -e "$p" ] || { echo "missing $p (apt-get install strongswan-charon libcharon-extra-plugins libstrongswan-standard-plugins)" >&2; exit 1; }
done
command -v swanctl tcpdump >/dev/null || { echo "missing swanctl or tcpdump" >&2; exit 1; }

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for ns in $NS_A $NS_B; do
    if [ -e /run/netns/$ns ]; then
      for pid in $(ip netns pids $ns 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
      sleep 0.3
      for pid in $(ip netns pids $ns 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del $ns 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT

sw() { local d=$1 c=$2; shift 2; STRONGSWAN_CONF=$d/strongswan.conf swanctl "$c" -u "unix://$d/charon.vici" "$@"; }

conf() { # dir ns local remote lan_l lan_r id_l id_r ike esp
  local d=$1; mkdir -p "$d/run" "$d/swanctl"
  cat >"$d/strongswan.conf" <<C
charon {
  load_modular = no
  load = random nonce openssl aes sha1 sha2 hmac gcm kdf curve25519 kernel-libipsec kernel-netlink socket-default vici
  install_routes = no
  filelog {
    lab { path = $d/$2.log
      time_format = %H:%M:%S
      append = no
      flush_line = yes
      default = 1
      ike = 4
      chd = 4
      knl = 0 }
  }
  syslog { daemon { default = -1 } }
  plugins { vici { socket = unix://$d/charon.vici } }
}
swanctl { load = random openssl
  socket = unix://$d/charon.vici }
C
  cat >"$d/swanctl/swanctl.conf" <<C
connections { site { version = 2
    local_addrs = $3
    remote_addrs = $4
    proposals = $9
    encap = yes
    mobike = no
    local { auth = psk
      id = $7 }
    remote { auth = psk
      id = $8 }
    children { lan { mode = tunnel
        local_ts = $5/32
        remote_ts = $6/32
        esp_proposals = ${10}
        start_action = none } } } }
secrets { ike-site { id-a = ikc-a.lab
    id-b = ikc-b.lab
    secret = "$PSK" } }
C
}

start() { # dir ns
  local d=$1
  rm -f "$d/charon.vici"
  STRONGSWAN_CONF=$d/strongswan.conf ip netns exec "$2" sh -c 'mount --bind "$1" /run && exec "$2"' sh "$d/run" "$CHARON" >"$d/charon.stdout" 2>&1 </dev/null &
  PIDS+=($!)
  for _ in $(seq 50); do [ -S "$d/charon.vici" ] && return 0; sleep 0.1; done
  echo "charon in $2 did not start; see $d" >&2; exit 1
}

for entry in "${PROFILES[@]}"; do
  IFS='|' read -r name ike esp <<<"$entry"
  cleanup; PIDS=()
  dir=$OUT/$name; rm -rf "$dir"; mkdir -p "$dir"
  for ns in $NS_A $NS_B; do ip netns add $ns; ip -n $ns link set lo up; done
  ip link add $IF_A netns $NS_A type veth peer name $IF_B netns $NS_B
  ip -n $NS_A addr add $OUT_A/24 dev $IF_A; ip -n $NS_A link set $IF_A up; ip -n $NS_A addr add $LAN_A/32 dev lo
  ip -n $NS_B addr add $OUT_B/24 dev $IF_B; ip -n $NS_B link set $IF_B up; ip -n $NS_B addr add $LAN_B/32 dev lo
  conf "$dir/a" $NS_A $OUT_A $OUT_B $LAN_A $LAN_B ikc-a.lab ikc-b.lab "$ike" "$esp"
  conf "$dir/b" $NS_B $OUT_B $OUT_A $LAN_B $LAN_A ikc-b.lab ikc-a.lab "$ike" "$esp"
  ip netns exec $NS_A tcpdump -U -ni $IF_A -s 0 -w "$dir/link.pcap" 'udp port 500 or udp port 4500' >/dev/null 2>&1 &
  PIDS+=($!)
  start "$dir/a" $NS_A; start "$dir/b" $NS_B
  for x in a b; do sw "$dir/$x" --load-all --file "$dir/$x/swanctl/swanctl.conf" >/dev/null; done
  sleep 0.5
  sw "$dir/a" --initiate --child lan --timeout 20 >/dev/null
  sw "$dir/a" --rekey --child lan >/dev/null; sleep 1
  sw "$dir/a" --rekey --ike site >/dev/null; sleep 1
  sw "$dir/a" --list-sas > "$dir/sas.txt"
  sw "$dir/a" --terminate --ike site --timeout 5 >/dev/null || true
  sleep 0.5
  cp "$dir/a/$NS_A.log" "$dir/ikc-a.log"; cp "$dir/b/$NS_B.log" "$dir/ikc-b.log"
  echo "$name: $(grep -c 'Sk_d secret' "$dir/ikc-a.log") IKE key sets, $(grep -c 'encryption initiator key' "$dir/ikc-a.log") child key sets"
done
