/**
 * `ip netns exec NS node --import tsx test/support/ike-host.ts <local address>`: an IkeUdp (test/support/ike-udp.ts)
 * driven by JSON lines on stdin, reporting JSON lines on stdout, for test/e2e/ike-strongswan.test.ts.
 *   in:  {"cmd":"addPeer","config":{...IkePeerConfig, psk as text}} | {"cmd":"removePeer","onramp":N}
 *        | {"cmd":"initiate","onramp":N} | {"cmd":"status","id":N} | {"cmd":"exit"}
 *   out: {"event":"ready"} | IkeUdpEvent | {"event":"status","id":N,"sas":[...],"drops":{name:count}}
 *        | {"event":"error","message":"..."}
 * Not a test file itself (no .test.ts).
 */
import { createInterface } from 'node:readline';
import { IKE_DROP_NAMES } from '../../src/onramp/ipsec/ike/ike-drop.js';
import type { IkePeerConfig } from '../../src/onramp/ipsec/types.js';
import { IkeUdp, type IkeUdpEvent } from './ike-udp.js';

type Command =
  | { cmd: 'addPeer'; config: Omit<IkePeerConfig, 'psk'> & { psk: string } }
  | { cmd: 'removePeer'; onramp: number }
  | { cmd: 'initiate'; onramp: number }
  | { cmd: 'status'; id: number }
  | { cmd: 'exit' };

const out = (o: IkeUdpEvent | Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};
const host = new IkeUdp(process.argv[2], out);

function handle(c: Command): void {
  switch (c.cmd) {
    case 'addPeer':
      host.addPeer({ ...c.config, psk: new TextEncoder().encode(c.config.psk) });
      break;
    case 'removePeer':
      host.removePeer(c.onramp);
      break;
    case 'initiate':
      host.initiate(c.onramp);
      break;
    case 'status': {
      const drops: Record<string, number> = {};
      host.engine.drops.forEach((n, i) => {
        if (n > 0) drops[IKE_DROP_NAMES[i] ?? String(i)] = n;
      });
      out({ event: 'status', id: c.id, sas: host.engine.status(), drops });
      break;
    }
    case 'exit':
      host.close();
      process.exit(0);
  }
}

await host.start();
out({ event: 'ready' });
createInterface({ input: process.stdin }).on('line', (line) => {
  try {
    handle(JSON.parse(line) as Command);
  } catch (e) {
    out({ event: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
});
process.stdin.on('end', () => {
  host.close();
  process.exit(0);
});
