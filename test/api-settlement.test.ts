import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { type Address, encodeAbiParameters, type Hex, keccak256 } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { prepareNetwork } from '../devnet/network.ts'
import { HEADER_ABI, verifyCertificate } from '../src/consensus/block.ts'
import { MurmurNode } from '../src/node/node.ts'
import { getJson, waitFor } from './helpers/wait.ts'

interface SettlementBody {
  height: string
  blockHash: Hex
  settlementRoot: Hex
  header: Record<string, string | number>
  leaves: unknown[]
  certificate: {
    round: number
    precommits: Array<{ validator: Address; timestampMs: number; extensionHash: Hex; signature: Hex }>
  }
  validators: Address[]
  powers: string[]
  error?: { code: string }
}

describe('GET /v1/settlement/:height (one validator node)', () => {
  let node: MurmurNode
  let api: string
  let dir: string
  let networkId: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-api-settlement-'))
    const net = await prepareNetwork({ dir, nodes: 1, stake: 900n })
    networkId = net.genesis.networkId
    node = new MurmurNode(
      {
        dataDir: net.nodes[0]!.dataDir,
        genesisPath: net.genesisPath,
        api: { host: '127.0.0.1', port: 0 },
        // The test polls for block 2 every 100 ms and then asks again at once: not a wallet's pace.
        apiLimits: { rateLimit: undefined },
      },
      pino({ level: 'silent' }),
    )
    await node.start()
    api = `http://127.0.0.1:${node.apiAddress!.port}`
  })
  afterAll(async () => {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('serves a committed height as a CommitProof: the header hashes to the block, the commit proves it', async () => {
    await waitFor(
      'block 2 committed',
      async () => (await getJson<{ hash?: string }>(`${api}/v1/blocks/2`)).hash,
    )
    const body = await getJson<SettlementBody>(`${api}/v1/settlement/2`)
    const block = await getJson<{ hash: Hex }>(`${api}/v1/blocks/2`)
    expect(body.blockHash).toBe(block.hash)
    expect(body.settlementRoot).toBe(`0x${'00'.repeat(32)}`)
    expect(body.leaves).toEqual([])
    const h = body.header
    const header = {
      height: BigInt(h.height!),
      round: Number(h.round),
      timeMs: BigInt(h.timeMs!),
      proposer: h.proposer as Address,
      parentHash: h.parentHash as Hex,
      bodyHash: h.bodyHash as Hex,
      settlementRoot: h.settlementRoot as Hex,
      validatorsHash: h.validatorsHash as Hex,
      nextValidatorsHash: h.nextValidatorsHash as Hex,
    }
    expect(keccak256(encodeAbiParameters(HEADER_ABI, [header]))).toBe(block.hash)
    const powers = body.powers.map((p) => BigInt(p))
    expect(
      keccak256(
        encodeAbiParameters([{ type: 'address[]' }, { type: 'uint256[]' }], [body.validators, powers]),
      ),
    ).toBe(header.validatorsHash)
    // The certificate as the contracts take it: the extension hashes are not the extensions, so the check
    // here is the node's own on the stored commit (GET /v1/blocks carries the extensions).
    const full = await getJson<{
      certificate: {
        round: number
        precommits: Array<{ validator: Address; signature: Hex; timestampMs: number; extension: Hex }>
      }
    }>(`${api}/v1/blocks/2`)
    expect(body.certificate.round).toBe(full.certificate.round)
    expect(body.certificate.precommits.map((p) => [p.validator, p.signature, p.timestampMs])).toEqual(
      full.certificate.precommits.map((p) => [p.validator, p.signature, p.timestampMs]),
    )
    const cert = {
      height: 2n,
      round: full.certificate.round,
      blockHash: block.hash,
      precommits: full.certificate.precommits.map((p) => ({
        validator: p.validator,
        signature: p.signature,
        timestampMs: p.timestampMs,
        extension: Buffer.from(p.extension.slice(2), 'hex'),
      })),
    }
    for (const [i, p] of cert.precommits.entries())
      expect(body.certificate.precommits[i]!.extensionHash).toBe(
        p.extension.length === 0 ? `0x${'00'.repeat(32)}` : keccak256(p.extension),
      )
    const set = new Map(body.validators.map((v, i) => [v, powers[i]!]))
    expect((await verifyCertificate(cert, set, 2n, cert.round, block.hash, networkId)).ok).toBe(true)
  })

  it('400 for a bad height, 404 for one not committed', async () => {
    const status = async (h: string) => {
      const res = await fetch(`${api}/v1/settlement/${h}`)
      return [res.status, ((await res.json()) as SettlementBody).error?.code]
    }
    expect(await status('x1')).toEqual([400, 'MALFORMED'])
    expect(await status('0')).toEqual([404, 'NOT_FOUND'])
    expect(await status('999999999')).toEqual([404, 'NOT_FOUND'])
  })
})
