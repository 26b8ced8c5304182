// The native flow cache (issue 10, item 6): established IPv4 UDP and ICMP echo flows forwarded TUN to TUN inside
// the addon, without a call into JavaScript. What Open vSwitch's datapath flow cache and Linux's nf_flowtable do:
// the slow path (the JS pipeline) decides once and installs an exact-match entry; the fast path only matches and
// rewrites.
//
//   TUN read (DrainTun) ─ a wakeup of <= kMaxBatch packets ─ per packet: parse the key, look it up
//     hit:  rewrite (addresses, ports / echo id, TTL - 1, checksums by RFC 1624 deltas) ─ write() to the egress TUN
//     miss: left in the batch (compacted by index) ─ JS as before; no packet left: JS is not called at all
//
// The rewrite an entry holds is learned from one packet JS forwarded: its first header bytes before and after the
// pipeline (Install). It reproduces forwardChunk's arithmetic exactly (src/dataplane/pipeline.ts): one checksum update
// per field, the terms ~old + new summed (RFC 1624 eqn 3), a UDP checksum 0 stays 0 and a computed 0 is sent as
// 0xFFFF (RFC 768). Entries are only installed for flows whose rewrite is the same for every packet (no IP id
// renumbering, no TCP: its tracker checks every segment), see Pipeline.offloadable.
//
// This header is the table and the byte work only (no I/O, no node-api); tether_io.cc owns the per-thread instance,
// the reads and writes. Handles are opaque pointers here.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace tether_flow_cache {

// Entries per thread: a power of two (the index is a mask of the hash). A few thousand established low-rate flows
// is what this cache is for: above a handful of packets per wakeup the JS batch path takes over (kMaxBatch).
constexpr uint32_t kCapacity = 4096;
// Open addressing with tombstones: installs stop at 3/4 of the slots used or tombstoned (the caller flushes).
constexpr uint32_t kMaxLoad = kCapacity / 4 * 3;
// A wakeup that read more packets than this is throughput-bound: the JS chunk path (USO coalescing, GRO) serves it
// better than one write() per packet, and every packet then goes to JS as before.
constexpr uint32_t kMaxBatch = 8;
// Bytes of a packet's start an install compares: the IPv4 header without options and the first 8 bytes of UDP or ICMP.
constexpr uint32_t kHeaderBytes = 28;

constexpr uint32_t kIpv4Header = 20;   // RFC 791, IHL 5
constexpr uint8_t kIpv4PlainVersionIhl = 0x45;
constexpr uint32_t kIpTotalLength = 2, kIpFlagsFragment = 6, kIpTtl = 8, kIpProtocol = 9, kIpChecksum = 10, kIpSrc = 12, kIpDst = 16;
constexpr uint16_t kIpMfAndOffset = 0x3fff;  // MF and the fragment offset: any of them set is a fragment
constexpr uint8_t kProtoIcmp = 1, kProtoUdp = 17;
constexpr uint32_t kUdpHeader = 8, kUdpLength = 4, kUdpChecksum = 6;  // RFC 768
constexpr uint32_t kIcmpEchoHeader = 8, kIcmpChecksum = 2, kIcmpId = 4;  // RFC 792: type, code, checksum, id, seq
constexpr uint8_t kIcmpEchoReply = 0, kIcmpEchoRequest = 8;
constexpr uint32_t kTtlWordShift = 8;  // TTL is the high byte of the word it shares with the protocol

enum State : uint8_t { kEmpty = 0, kUsed = 1, kTomb = 2 };

inline uint16_t Rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t Rd32(const uint8_t* p) { return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3]; }
inline void Wr16(uint8_t* p, uint16_t v) { p[0] = static_cast<uint8_t>(v >> 8); p[1] = static_cast<uint8_t>(v); }
inline void Wr32(uint8_t* p, uint32_t v) { p[0] = static_cast<uint8_t>(v >> 24); p[1] = static_cast<uint8_t>(v >> 16); p[2] = static_cast<uint8_t>(v >> 8); p[3] = static_cast<uint8_t>(v); }
// RFC 1624 eqn 3 terms: a 16-bit word, a 32-bit value (two words), changing from `o` to `n`.
inline uint32_t WordDelta(uint16_t o, uint16_t n) { return static_cast<uint32_t>(static_cast<uint16_t>(~o)) + n; }
inline uint32_t Word32Delta(uint32_t o, uint32_t n) { return WordDelta(static_cast<uint16_t>(o), static_cast<uint16_t>(n)) + WordDelta(static_cast<uint16_t>(o >> 16), static_cast<uint16_t>(n >> 16)); }
// checksumAdjust (src/wire/checksum.ts): HC' = ~(~HC + delta), folded twice (delta stays far below 2^31).
inline uint16_t Adjust(uint16_t hc, uint32_t delta) {
  uint32_t s = static_cast<uint32_t>(static_cast<uint16_t>(~hc)) + delta;
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

// What a packet is matched by: its ingress, protocol, addresses and L4 words (UDP ports; ICMP echo id and 0), and for
// ICMP the echo type (a request's entry never matches a reply, an ICMP error never matches).
struct Key {
  const void* ingress;
  uint32_t src, dst;
  uint16_t w0, w1;
  uint8_t proto, type;
};

// The key of a packet this cache may take: IPv4 without options, not a fragment, UDP with a sound length, or an
// ICMP echo request or reply. False for anything else (it goes to JS). Checks nothing that varies per packet of a
// flow beyond the shape (TTL, header checksum: see Forwardable).
inline bool ParseKey(const uint8_t* p, size_t len, const void* ingress, Key* k) {
  if (len < kHeaderBytes || p[0] != kIpv4PlainVersionIhl) return false;
  const uint32_t total = Rd16(p + kIpTotalLength);
  if (total > len || total < kHeaderBytes) return false;
  if ((Rd16(p + kIpFlagsFragment) & kIpMfAndOffset) != 0) return false;
  const uint8_t proto = p[kIpProtocol];
  const uint8_t* l4 = p + kIpv4Header;
  k->ingress = ingress;
  k->src = Rd32(p + kIpSrc);
  k->dst = Rd32(p + kIpDst);
  k->proto = proto;
  if (proto == kProtoUdp) {
    const uint32_t udp_len = Rd16(l4 + kUdpLength);
    if (udp_len < kUdpHeader || udp_len > total - kIpv4Header) return false;
    k->w0 = Rd16(l4);
    k->w1 = Rd16(l4 + 2);
    k->type = 0;
    return true;
  }
  if (proto == kProtoIcmp) {
    const uint8_t type = l4[0];
    if (type != kIcmpEchoRequest && type != kIcmpEchoReply) return false;
    k->w0 = Rd16(l4 + kIcmpId);
    k->w1 = 0;
    k->type = type;
    return true;
  }
  return false;
}

// What varies per packet and must hold for the fast path: a valid header checksum (RFC 1071: the header sums to
// 0xFFFF) and a TTL the router may decrement (RFC 1812 section 5.3.1: TTL <= 1 is JS's, which sends time exceeded).
inline bool Forwardable(const uint8_t* p) {
  uint32_t sum = 0;
  for (uint32_t k = 0; k < kIpv4Header; k += 2) sum += Rd16(p + k);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff && p[kIpTtl] > 1;
}

// DF (RFC 791 section 3.1, flags bit 1): an entry of a direction whose ids are renumbered takes these packets only.
constexpr uint8_t kIpFlagDf = 0x40;  // in the byte at kIpFlagsFragment
inline bool HasDf(const uint8_t* p) { return (p[kIpFlagsFragment] & kIpFlagDf) != 0; }

struct Entry {
  // key
  const void* ingress;
  uint32_t src, dst;
  uint16_t w0, w1;
  uint8_t proto, type;
  uint8_t state;
  // the rewrite
  bool src_changes, dst_changes, w0_changes, w1_changes;
  bool df_only;  // only packets with DF set (the direction renumbers the others' ids: Pipeline.offloadable)
  uint32_t new_src, new_dst;
  uint16_t new_w0, new_w1;
  uint32_t ip_delta;  // the address terms of the IPv4 header checksum (TTL's is added per packet)
  uint32_t l4_delta;  // UDP: addresses (pseudo-header) and ports; ICMP: the echo id
  void* egress;
  uint32_t in_port, out_port;
  int32_t node;  // the JS flow node (flow index * 2 + direction) the hits are folded into
  double packets, bytes;  // hits since the last fold
};

inline uint32_t Hash(const Key& k) {
  uint64_t h = reinterpret_cast<uintptr_t>(k.ingress);
  h ^= (static_cast<uint64_t>(k.src) << 32 | k.dst) * 0x9e3779b97f4a7c15ull;
  h ^= (static_cast<uint64_t>(k.w0) << 24 | static_cast<uint64_t>(k.w1) << 8 | k.proto | static_cast<uint64_t>(k.type) << 40) * 0xc2b2ae3d27d4eb4full;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return static_cast<uint32_t>(h);
}

inline bool Matches(const Entry& e, const Key& k) {
  return e.ingress == k.ingress && e.src == k.src && e.dst == k.dst && e.w0 == k.w0 && e.w1 == k.w1 && e.proto == k.proto && e.type == k.type;
}

struct Stats {
  double hits = 0, hit_bytes = 0, punts = 0, installs = 0, refused = 0, removals = 0, flushes = 0;
  double wakeups_without_js = 0;  // wakeups whose packets all hit: JS was not called
  double follow_reads = 0, follow_packets = 0;  // follow-through reads (tether_io.cc FollowThrough) and the packets they found
};

// Install results (negative: not installed).
constexpr int32_t kRefusedShape = -1;  // the packet is not one this cache takes, or its rewrite is not learnable
constexpr int32_t kRefusedFull = -2;   // no room: flush, then install again

class Table {
 public:
  Entry entries[kCapacity] = {};
  uint32_t used = 0, tombs = 0;
  Stats stats;

  // The slot of the entry matching k, or -1.
  int32_t Find(const Key& k) const {
    uint32_t i = Hash(k) & (kCapacity - 1);
    for (uint32_t probes = 0; probes < kCapacity; probes++, i = (i + 1) & (kCapacity - 1)) {
      const Entry& e = entries[i];
      if (e.state == kEmpty) return -1;
      if (e.state == kUsed && Matches(e, k)) return static_cast<int32_t>(i);
    }
    return -1;
  }

  // Learns the rewrite from one packet's first kHeaderBytes before and after JS forwarded it (see the file comment).
  // Refuses (kRefusedShape) unless both are packets this cache takes, of one protocol and type, the TTL went down by
  // one and nothing but the addresses, the ports / echo id, the TTL and the checksums changed.
  int32_t Install(const uint8_t* before, const uint8_t* after, const void* ingress, void* egress, uint32_t in_port, uint32_t out_port, int32_t node, bool df_only) {
    Key k, a;
    // The shape from the headers alone (ParseKey reads the first kHeaderBytes; the packet's length was JS's to check).
    constexpr size_t kAnyLength = 0xffff;
    if (!ParseKey(before, kAnyLength, ingress, &k) || !ParseKey(after, kAnyLength, ingress, &a)) return Refuse();
    if (a.proto != k.proto || a.type != k.type || after[kIpTtl] + 1 != before[kIpTtl]) return Refuse();
    // Version/IHL, TOS, total length, id, flags and fragment offset: unchanged (an id renumbered per packet is not learnable).
    if (memcmp(before, after, kIpTtl) != 0 || before[kIpProtocol] != after[kIpProtocol]) return Refuse();
    if (k.proto == kProtoUdp && Rd16(before + kIpv4Header + kUdpLength) != Rd16(after + kIpv4Header + kUdpLength)) return Refuse();
    if (k.proto == kProtoIcmp && (before[kIpv4Header + 1] != after[kIpv4Header + 1] || Rd16(before + kIpv4Header + 6) != Rd16(after + kIpv4Header + 6))) return Refuse();
    int32_t at = Find(k);
    if (at < 0) {
      if (used + tombs >= kMaxLoad) return kRefusedFull;
      uint32_t i = Hash(k) & (kCapacity - 1);
      while (entries[i].state == kUsed) i = (i + 1) & (kCapacity - 1);
      if (entries[i].state == kTomb) tombs--;
      used++;
      at = static_cast<int32_t>(i);
    }
    Entry& e = entries[at];
    e = Entry{};
    e.ingress = ingress;
    e.src = k.src;
    e.dst = k.dst;
    e.w0 = k.w0;
    e.w1 = k.w1;
    e.proto = k.proto;
    e.type = k.type;
    e.state = kUsed;
    e.new_src = a.src;
    e.new_dst = a.dst;
    e.new_w0 = a.w0;
    e.new_w1 = a.w1;
    e.src_changes = a.src != k.src;
    e.dst_changes = a.dst != k.dst;
    e.w0_changes = a.w0 != k.w0;
    e.w1_changes = a.w1 != k.w1;
    // The same terms, added under the same conditions, as forwardChunk (UDP) and translate (ICMP echo) add them.
    uint32_t addr = 0;
    if (e.src_changes) addr += Word32Delta(k.src, a.src);
    if (e.dst_changes) addr += Word32Delta(k.dst, a.dst);
    e.ip_delta = addr;
    if (k.proto == kProtoUdp) {
      e.l4_delta = addr + (e.w0_changes ? WordDelta(k.w0, a.w0) : 0) + (e.w1_changes ? WordDelta(k.w1, a.w1) : 0);
    } else {
      e.l4_delta = e.w0_changes ? WordDelta(k.w0, a.w0) : 0;  // ICMPv4 has no pseudo-header (RFC 792)
    }
    e.egress = egress;
    e.in_port = in_port;
    e.out_port = out_port;
    e.node = node;
    e.df_only = df_only;
    stats.installs += 1;
    return at;
  }

  // Removes the entry in `slot` if it still belongs to `node` (a slot reused since is left alone).
  bool Remove(uint32_t slot, int32_t node) {
    if (slot >= kCapacity || entries[slot].state != kUsed || entries[slot].node != node) return false;
    Drop(slot);
    return true;
  }

  // Removes every entry reading from or writing to `handle` (it is closing); returns how many.
  uint32_t ForgetHandle(const void* handle) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < kCapacity && used > 0; i++) {
      Entry& e = entries[i];
      if (e.state == kUsed && (e.ingress == handle || e.egress == handle)) { Drop(i); n++; }
    }
    return n;
  }

  void Flush() {
    for (uint32_t i = 0; i < kCapacity; i++) entries[i].state = kEmpty;
    used = tombs = 0;
    stats.flushes += 1;
  }

  // Rewrites packet p (its key matched entry e, Forwardable held) in place, as JS would have.
  static void Rewrite(const Entry& e, uint8_t* p) {
    uint8_t* l4 = p + kIpv4Header;
    if (e.src_changes) Wr32(p + kIpSrc, e.new_src);
    if (e.dst_changes) Wr32(p + kIpDst, e.new_dst);
    const uint8_t ttl = p[kIpTtl];
    p[kIpTtl] = static_cast<uint8_t>(ttl - 1);
    const uint32_t ttl_delta = WordDelta(static_cast<uint16_t>(ttl << kTtlWordShift), static_cast<uint16_t>((ttl - 1) << kTtlWordShift));
    Wr16(p + kIpChecksum, Adjust(Rd16(p + kIpChecksum), e.ip_delta + ttl_delta));
    if (e.proto == kProtoUdp) {
      if (e.w0_changes) Wr16(l4, e.new_w0);
      if (e.w1_changes) Wr16(l4 + 2, e.new_w1);
      const uint16_t old = Rd16(l4 + kUdpChecksum);
      // UDP: 0 is "no checksum" and stays; a computed 0 is sent as 0xFFFF (RFC 768).
      if (e.l4_delta != 0 && old != 0) {
        uint16_t c = Adjust(old, e.l4_delta);
        if (c == 0) c = 0xffff;
        Wr16(l4 + kUdpChecksum, c);
      }
    } else if (e.w0_changes) {
      Wr16(l4 + kIcmpId, e.new_w0);
      Wr16(l4 + kIcmpChecksum, Adjust(Rd16(l4 + kIcmpChecksum), e.l4_delta));
    }
  }

 private:
  int32_t Refuse() {
    stats.refused += 1;
    return kRefusedShape;
  }
  void Drop(uint32_t slot) {
    entries[slot].state = kTomb;
    used--;
    tombs++;
    stats.removals += 1;
  }
};

}  // namespace tether_flow_cache
