// A DNS server for tests, on loopback UDP, that alone knows the names it is given: A records with their
// TTL (and AAAA records), NODATA for other types of a known name, NXDOMAIN for every other name; it records each question.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';

/** A DNS server that knows only `answers` (A records, with their TTL); NXDOMAIN for every other name. */
export class TestDnsServer {
  readonly answers = new Map<string, { ip: string; ttl: number }>();
  /** AAAA records, by name. */
  readonly answers6 = new Map<string, { ip: string; ttl: number }>();
  readonly asked: string[] = [];
  readonly #socket: UdpSocket = createSocket('udp4');

  async start(): Promise<number> {
    this.#socket.on('message', (query, client) => this.#socket.send(this.#answer(query), client.port, client.address));
    this.#socket.bind(0, '127.0.0.1');
    await once(this.#socket, 'listening');
    return this.#socket.address().port;
  }

  close(): void {
    this.#socket.close();
  }

  #answer(query: Buffer): Buffer {
    // Question: labels from offset 12 to the zero octet, then type and class.
    const labels: string[] = [];
    let at = 12;
    while (query[at]! > 0) {
      labels.push(query.subarray(at + 1, at + 1 + query[at]!).toString('latin1'));
      at += 1 + query[at]!;
    }
    const question = query.subarray(12, at + 5);
    const type = query.readUInt16BE(at + 1);
    const name = labels.join('.').toLowerCase();
    this.asked.push(`${name} ${type === 1 ? 'A' : type === 28 ? 'AAAA' : type}`);
    const known = this.answers.get(name) ?? this.answers6.get(name);
    const record = type === 1 ? this.answers.get(name) : type === 28 ? this.answers6.get(name) : undefined;
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2);
    // QR, the query's RD, RA; rcode 3 (NXDOMAIN) for an unknown name.
    header.writeUInt16BE(0x8180 | (query.readUInt16BE(2) & 0x0100) | (known ? 0 : 3), 2);
    header.writeUInt16BE(1, 4);
    if (!record) return Buffer.concat([header, question]);
    header.writeUInt16BE(1, 6);
    const data = type === 1 ? Buffer.from(record.ip.split('.').map(Number)) : ipv6Bytes(record.ip);
    const answer = Buffer.alloc(12);
    answer.writeUInt16BE(0xc00c, 0); // the question's name
    answer.writeUInt16BE(type, 2);
    answer.writeUInt16BE(1, 4);
    answer.writeUInt32BE(record.ttl, 6);
    answer.writeUInt16BE(data.length, 10);
    return Buffer.concat([header, question, answer, data]);
  }
}

/** The 16 octets of an IPv6 address written with at most one `::`. */
function ipv6Bytes(text: string): Buffer {
  const [head = '', tail] = text.split('::');
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}
