/**
 * A TransportHost without TUNs or an Edge (src/daemon/transports/transport.ts): the device layer's transports and
 * the underlay demux run against it in unit tests. Counters, the delivery table, the feedback batch and the
 * tunnel addresses (set them as the Edge would: host.tunnelAddresses.set(onramp, health_check.source)) are real;
 * the log is silent and the host never "runs" (no timers are scheduled).
 */
import { PacketBatch } from '../../src/common/packet-batch.js';
import { EDGE_COUNTER_NAMES } from '../../src/daemon/transports/counters.js';
import { DeliveryTable, TunOutputs, TunnelAddresses, type TransportHost } from '../../src/daemon/transports/transport.js';

export function transportHost(feedbackCapacity = 4): TransportHost {
  const silent = { info() {}, warn() {}, error() {}, debug() {} };
  return {
    log: silent,
    counters: new Float64Array(EDGE_COUNTER_NAMES.length),
    delivery: new DeliveryTable(),
    outputs: new TunOutputs(8),
    feedback: new PacketBatch(feedbackCapacity),
    tunnelAddresses: new TunnelAddresses(),
    mtu: 1500,
    isRunning: () => false,
    readPlain: () => {},
  };
}
