/**
 * The key-leak check of issue 13, item 7: every private key a devnet created (validator keys, the nodes'
 * libp2p identity keys, the deployer's and the wallets' keys that it funds on its anvil rollups) is
 * looked for in every output of the devnet: each node's log file (its stderr and stdout), each node's
 * answer to every public and admin GET route (`/metrics` included, a sample of the `/v1/events`
 * stream), the devnet's dashboard answers, and the lines the devnet printed. Each key in hex with and
 * without 0x, lower and upper case, and base64 / base64url of its raw bytes (for the Ed25519 key: its
 * protobuf encoding, its 64 raw bytes and its 32-byte seed). Call it before the devnet's teardown.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import type { Devnet } from '../../devnet/devnet.ts'
import { NODE_KEY_FILE, VALIDATOR_KEY_FILE } from '../../src/identity/keys.ts'

/** One secret and the names of where it came from. */
interface Secret {
  name: string
  bytes: Uint8Array
}

/** The text forms a secret could take in an output. */
export function secretForms(bytes: Uint8Array): Array<[string, string]> {
  const b = Buffer.from(bytes)
  const hex = b.toString('hex')
  return [
    ['hex', hex],
    ['HEX', hex.toUpperCase()],
    ['0xhex', `0x${hex}`],
    ['base64', b.toString('base64').replace(/=+$/, '')],
    ['base64url', b.toString('base64url')],
  ]
}

const unhex = (h: string) => new Uint8Array(Buffer.from(h.replace(/^0x/, ''), 'hex'))

/** Every private key of the devnet, from its data dirs and its own record. */
async function devnetSecrets(net: Devnet): Promise<Secret[]> {
  const out: Secret[] = []
  for (const n of net.net?.nodes ?? []) {
    const v = JSON.parse(await readFile(join(n.dataDir, VALIDATOR_KEY_FILE), 'utf8')) as {
      privateKey: string
    }
    out.push({ name: `node ${n.index} validator key`, bytes: unhex(v.privateKey) })
    const k = JSON.parse(await readFile(join(n.dataDir, NODE_KEY_FILE), 'utf8')) as { privateKey: string }
    const proto = unhex(k.privateKey)
    const raw = privateKeyFromProtobuf(proto).raw
    out.push({ name: `node ${n.index} libp2p key (protobuf)`, bytes: proto })
    out.push({ name: `node ${n.index} libp2p key (raw)`, bytes: raw })
    out.push({ name: `node ${n.index} libp2p key (seed)`, bytes: raw.subarray(0, 32) })
  }
  for (const [i, key] of net.secretKeys().entries()) out.push({ name: `devnet key ${i}`, bytes: unhex(key) })
  return out
}

async function text(url: string): Promise<string> {
  const r = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  return `${r.status} ${await r.text()}`
}

/** The first events of an SSE stream: until `bytes` have come or `ms` passed, whichever is first. */
async function streamSample(url: string, bytes = 4096, ms = 2_000): Promise<string> {
  const ctl = new AbortController()
  const timer = setTimeout(() => ctl.abort(), ms)
  let got = ''
  try {
    const r = await fetch(url, { signal: ctl.signal })
    const reader = r.body!.getReader()
    while (got.length < bytes) {
      const { value, done } = await reader.read()
      if (done) break
      got += Buffer.from(value).toString()
    }
    ctl.abort()
  } catch {
    // The deadline ended the sample: what came is what is checked.
  } finally {
    clearTimeout(timer)
  }
  return got
}

/** Every output of the devnet, by where it came from. */
async function devnetOutputs(net: Devnet, printed: readonly string[]): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [['devnet output', printed.join('\n')]]
  const dir = net.net!.dir
  for (const f of await readdir(dir)) {
    if (f.endsWith('.log')) out.push([`${f}`, await readFile(join(dir, f), 'utf8')])
  }
  const state = net.state()
  out.push(['devnet dashboard /api/state', await text(`${state.control}/api/state`)])
  for (const n of state.nodes) {
    out.push([`devnet dashboard /api/node/${n.index}`, await text(`${state.control}/api/node/${n.index}`)])
    if (n.api === null) continue
    const status = JSON.parse((await text(`${n.api}/v1/status`)).slice(4)) as {
      height: number | string
      validator?: string
    }
    const height = Number(status.height)
    const validator = net.net!.nodes[n.index]!.address
    const paths = [
      '/v1/status',
      '/v1/peers',
      '/v1/peers/bans',
      '/metrics',
      '/v1/rollups',
      '/v1/validators',
      '/v1/staking',
      `/v1/accounts/${validator}`,
      '/admin/v1/probes',
      ...[1, Math.max(1, height - 1), height].map((h) => `/v1/blocks/${h}`),
      ...[Math.max(1, height - 1), height].map((h) => `/v1/settlement/${h}`),
    ]
    for (const p of paths) out.push([`node ${n.index} GET ${p}`, await text(`${n.api}${p}`)])
    out.push([`node ${n.index} GET /v1/events`, await streamSample(`${n.api}/v1/events`)])
  }
  return out
}

/**
 * Where any key of the devnet shows in any of its outputs: one line per (key, form, output); empty when
 * nothing leaks. `printed` is what the devnet wrote through its `out` option.
 */
export async function findKeyLeaks(net: Devnet, printed: readonly string[] = []): Promise<string[]> {
  const secrets = await devnetSecrets(net)
  const outputs = await devnetOutputs(net, printed)
  const leaks: string[] = []
  for (const s of secrets) {
    for (const [form, needle] of secretForms(s.bytes)) {
      for (const [where, hay] of outputs)
        if (hay.includes(needle)) leaks.push(`${s.name} (${form}) in ${where}`)
    }
  }
  if (outputs.length < 5 || secrets.length < 4) throw new Error('key-leak check: no devnet to look at')
  return leaks
}
