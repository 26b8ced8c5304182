/**
 * Identities (RFC 7296 §3.5) ↔ ID payload bodies. Matching is by type and bytes; FQDN and RFC822 names compare
 * case-insensitively (DNS names are, RFC 4343; strongSwan compares them so too).
 */
import { parseIpv4, parseIpv6 } from '../../../wire/addr.js';
import { write32 } from '../../../wire/bytes.js';
import type { IkeIdentity } from '../types.js';
import { IdType } from './constants.js';

const utf8 = new TextEncoder();

/** The ID type and data of an identity; null when an address identity's text does not parse. */
export function identityToWire(id: IkeIdentity): { idType: number; data: Uint8Array } | null {
  switch (id.type) {
    case 'fqdn':
      return { idType: IdType.FQDN, data: utf8.encode(id.value) };
    case 'rfc822':
      return { idType: IdType.RFC822, data: utf8.encode(id.value) };
    case 'key-id':
      return { idType: IdType.KeyId, data: id.value.slice() };
    case 'ipv4': {
      const a = parseIpv4(id.value);
      if (a < 0) return null;
      const data = new Uint8Array(4);
      write32(data, 0, a);
      return { idType: IdType.IPv4, data };
    }
    case 'ipv6': {
      const w = parseIpv6(id.value);
      if (w === null) return null;
      const data = new Uint8Array(16);
      for (let i = 0; i < 4; i++) write32(data, 4 * i, w[i]);
      return { idType: IdType.IPv6, data };
    }
  }
}

function lower(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes).toLowerCase();
}

/** Does the ID payload (type, data) name this identity? */
export function identityMatches(id: IkeIdentity, idType: number, data: Uint8Array): boolean {
  const w = identityToWire(id);
  if (w === null || w.idType !== idType) return false;
  if (idType === IdType.FQDN || idType === IdType.RFC822) return lower(w.data) === lower(data);
  return w.data.length === data.length && w.data.every((b, i) => b === data[i]);
}
