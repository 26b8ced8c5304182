/** The configuration going out: as YAML (`tether config export`), and with its secrets redacted. */
import { stringify } from 'yaml';
import type { TetherConfig } from './schema.js';

export const REDACTED = '(redacted)';

/** The configuration as YAML (for `tether config export`); loadConfig reads it back to an equal object. */
export function stringifyConfig(cfg: TetherConfig): string {
  return stringify(cfg, { lineWidth: 0 });
}

/** A deep copy with every secret (private keys, preshared keys, IPsec PSKs) replaced by "(redacted)": safe to log or return. */
export function redact(cfg: TetherConfig): TetherConfig {
  const copy = structuredClone(cfg);
  for (const d of copy.wireguard_devices) if (d.private_key !== undefined) d.private_key = REDACTED;
  for (const o of copy.onramps) {
    if (o.type === 'wireguard' && o.wireguard.preshared_key !== undefined) o.wireguard.preshared_key = REDACTED;
    if (o.type === 'ipsec' && o.ipsec.psk !== undefined) o.ipsec.psk = REDACTED;
  }
  return copy;
}
