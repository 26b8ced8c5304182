/**
 * wire/capture-filter: `tether capture --filter` expressions (src/wire/capture-filter.ts). Inputs are mutants of
 * real filters (docs/CAPTURE.md's, the tests') and random text, decoded as UTF-8. The parser must answer every
 * input with a tree or a FilterError whose column points at its token; an accepted tree must print and parse back
 * to itself, and its predicate must run on inspected packets without throwing.
 */
import { buildIcmpEcho, buildTcp, buildUdp } from '../../src/wire/build.js';
import { compileFilter, FilterError, formatFilter, parseFilter } from '../../src/wire/capture-filter.js';
import { inspect } from '../../src/wire/inspect.js';
import { PacketInfo } from '../../src/wire/packet-info.js';
import { FuzzFailure, type FuzzTarget } from '../harness.js';
import { fromSeeds } from '../mutate.js';
import type { Rng } from '../rng.js';

const MAX_INPUT = 1200;
const SEEDS = [
  '', 'tcp port 80', 'udp and host 203.0.113.10', 'host 10.0.1.10', 'src host 10.0.1.10 and dst port 53',
  'net 10.0.0.0/8 or net 2001:db8::/32', '!(udp || tcp)', 'icmp or udp and port 443', 'not (tcp and (port 80 or port 443))',
  'ip6 and dst 2001:db8::1', 'dst 203.0.113.0/24', 'tcp and (port 80', 'port 99999', 'host 10.0.1.300',
].map((s) => new TextEncoder().encode(s));

function packets(): PacketInfo[] {
  return [
    buildUdp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 40000, dstPort: 53 }),
    buildTcp({ src: '203.0.113.10', dst: '198.51.100.1' }, { srcPort: 80, dstPort: 61000, flags: 0x12, seq: 1, ack: 2 }),
    buildIcmpEcho({ src: '10.0.1.10', dst: '203.0.113.10' }, { type: 'request', id: 7 }),
    buildUdp({ src: '2001:db8::10', dst: '2001:db8:1::1' }, { srcPort: 5000, dstPort: 443 }),
  ].map((p) => {
    const info = new PacketInfo();
    inspect(p, 0, p.length, info);
    return info;
  });
}

export function captureFilterTarget(): FuzzTarget {
  const infos = packets();
  const decoder = new TextDecoder();
  return {
    name: 'wire/capture-filter',
    generate: (rng: Rng) => fromSeeds(rng, SEEDS, MAX_INPUT),
    run(input: Uint8Array): string {
      const text = decoder.decode(input);
      let tree;
      try {
        tree = parseFilter(text);
      } catch (e) {
        if (!(e instanceof FilterError)) throw e;
        if (e.position < 0 || e.position > text.length) throw new FuzzFailure(`FilterError column ${e.position + 1} outside the ${text.length}-character input`);
        if (text.slice(e.position, e.position + e.token.length) !== e.token) throw new FuzzFailure(`FilterError names '${e.token}' but column ${e.position + 1} holds '${text.slice(e.position, e.position + e.token.length)}'`);
        return 'refused';
      }
      const again = JSON.stringify(parseFilter(formatFilter(tree)));
      if (again !== JSON.stringify(tree)) throw new FuzzFailure(`format/parse changed the tree: ${formatFilter(tree)}`);
      const predicate = compileFilter(tree);
      let matched = 0;
      for (const info of infos) if (predicate(info)) matched++;
      return `accepted, ${matched} of ${infos.length} match`;
    },
  };
}
