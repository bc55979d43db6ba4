import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import { decode as cborDecode } from 'cborg'
import fc from 'fast-check'
import { pino } from 'pino'
import { type Address, encodeAbiParameters, type Hex, keccak256 } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { type ApiNode, ApiServer } from '../src/api/server.ts'
import { type SettlementSource, settlementRoutes } from '../src/api/settlement.ts'
import {
  type Block,
  type BlockHeader,
  blockHash,
  blockHashOfBytes,
  blockHeader,
  certificateFromVotes,
  decodeBlock,
  encodeBlock,
  encodeHeader,
  HEADER_ABI,
  headerHash,
  verifyCertificate,
} from '../src/consensus/block.ts'
import { signVote } from '../src/consensus/votes.ts'
import { validatorSetHash } from '../src/state/epoch.ts'
import {
  COMMIT_PROOF_TUPLE,
  LEAF_ENCODING,
  LEAF_FILL,
  LEAF_REFUND,
  leafValues,
  type SettlementLeaf,
  settlementLeaves,
  settlementProof,
  settlementRoot,
  settlementTree,
  toCommitProof,
  validatorSetValues,
} from '../src/state/settlement.ts'
import type { AppState, AssignmentState } from '../src/state/types.ts'

const hex = (bytes: number, seed: number): Hex =>
  `0x${keccak256(`0x${seed.toString(16).padStart(8, '0')}`).slice(2, 2 + 2 * bytes)}`
const ZERO32: Hex = `0x${'00'.repeat(32)}`

function block(over: Partial<Block> = {}): Block {
  return {
    height: 7n,
    round: 2,
    proposer: hex(20, 1) as Address,
    time: 1_900_000_000_123,
    parentHash: hex(32, 2),
    assignments: [],
    intents: [],
    reassignments: [],
    fills: [
      {
        intentId: hex(32, 3),
        chainId: 902n,
        txHash: hex(32, 4),
        blockNumber: 77n,
        blockHash: hex(32, 5),
        executor: hex(20, 6) as Address,
        signature: `0x${'11'.repeat(64)}1b`,
      },
    ],
    stakeMoves: [],
    evidence: [],
    lastCommit: null,
    unjails: [],
    validatorsHash: hex(32, 7),
    nextValidatorsHash: hex(32, 8),
    settlementRoot: hex(32, 9),
    ...over,
  }
}

const hexOf = (bytes: fc.Arbitrary<Uint8Array>) =>
  bytes.map((b) => `0x${Buffer.from(b).toString('hex')}` as Hex)
const bytes32 = hexOf(fc.uint8Array({ minLength: 32, maxLength: 32 }))
const address = hexOf(fc.uint8Array({ minLength: 20, maxLength: 20 })) as fc.Arbitrary<Address>

describe('the block header', () => {
  it('hashes as keccak256(abi.encode(header)), the hand encoding equal to viem', () => {
    fc.assert(
      fc.property(
        fc.record({
          height: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
          round: fc.integer({ min: 0, max: 0xffff_ffff }),
          timeMs: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
          proposer: address,
          parentHash: bytes32,
          bodyHash: bytes32,
          settlementRoot: bytes32,
          validatorsHash: bytes32,
          nextValidatorsHash: bytes32,
        }),
        (h: BlockHeader) => {
          const abi = encodeAbiParameters(HEADER_ABI, [h])
          expect(`0x${Buffer.from(encodeHeader(h)).toString('hex')}`).toBe(abi)
          expect(headerHash(h)).toBe(keccak256(abi))
        },
      ),
      { numRuns: 200 },
    )
  })

  it("is the block's fields and the hash of its body bytes; bytes and object hash alike", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
        fc.integer({ min: 0, max: 0x7fff_ffff }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        bytes32,
        (height, round, time, root) => {
          const b = block({ height, round, time, settlementRoot: root })
          const bytes = encodeBlock(b)
          // The body is the outer array's last field: a byte string, hashed as it is.
          const outer = cborDecode(bytes.subarray(1)) as unknown[]
          const body = outer[outer.length - 1] as Uint8Array
          const header = {
            height,
            round,
            timeMs: BigInt(time),
            proposer: b.proposer,
            parentHash: b.parentHash,
            bodyHash: keccak256(body),
            settlementRoot: root,
            validatorsHash: b.validatorsHash,
            nextValidatorsHash: b.nextValidatorsHash,
          }
          expect(blockHeader(b)).toEqual(header)
          const want = keccak256(encodeAbiParameters(HEADER_ABI, [header]))
          expect(blockHash(b)).toBe(want)
          expect(blockHashOfBytes(bytes)).toBe(want)
          expect(blockHash(decodeBlock(bytes))).toBe(want)
        },
      ),
      { numRuns: 100 },
    )
  })

  it('changes when the body changes (a fill, the last commit), the header fields staying the same', () => {
    const b = block()
    const other = block({ fills: [{ ...b.fills[0]!, blockNumber: 78n }] })
    expect(blockHeader(other).bodyHash).not.toBe(blockHeader(b).bodyHash)
    expect(blockHash(other)).not.toBe(blockHash(b))
    expect(blockHashOfBytes(encodeBlock(other))).toBe(blockHash(other))
    expect(blockHash(block({ fills: [] }))).not.toBe(blockHash(b))
  })

  it('hashing received bytes refuses a malformed header', () => {
    const bytes = encodeBlock(block())
    expect(() => blockHashOfBytes(bytes.subarray(0, 40))).toThrow()
    expect(() => blockHashOfBytes(Uint8Array.from([3, ...bytes.subarray(1)]))).toThrow()
  })
})

function leaf(i: number, kind: 1 | 2 = LEAF_FILL): SettlementLeaf {
  return {
    kind,
    orderId: hex(32, 100 + i),
    originChainId: 901n,
    destinationChainId: kind === LEAF_FILL ? 902n + BigInt(i % 2) : 0n,
    executor: kind === LEAF_FILL ? (hex(20, 200 + i) as Address) : `0x${'00'.repeat(20)}`,
    token: hex(20, 300) as Address,
    amount: 10n ** 18n + BigInt(i),
    recipient: hex(20, 400 + i) as Address,
  }
}

describe('settlement leaves and root', () => {
  it('roots and proofs equal StandardMerkleTree (1 to 40 leaves); proofs verify; none gives bytes32(0)', () => {
    expect(settlementRoot([])).toBe(ZERO32)
    for (const n of [1, 2, 3, 4, 5, 7, 8, 13, 40]) {
      const leaves = Array.from({ length: n }, (_, i) => leaf(i, i % 5 === 4 ? LEAF_REFUND : LEAF_FILL))
      const values = leaves.map(leafValues)
      const lib = StandardMerkleTree.of(values, [...LEAF_ENCODING])
      const tree = settlementTree(leaves)
      expect(tree.root).toBe(lib.root)
      for (let i = 0; i < n; i++) {
        expect(tree.proof(i)).toEqual(lib.getProof(i))
        expect(StandardMerkleTree.verify(tree.root, [...LEAF_ENCODING], values[i]!, tree.proof(i))).toBe(true)
      }
      // A proof of one leaf does not prove another (a leaf's amount changed).
      const forged = [...values[0]!] as (typeof values)[0]
      forged[6] = (forged[6] as bigint) + 1n
      expect(
        StandardMerkleTree.verify(tree.root, [...LEAF_ENCODING], forged, settlementProof(leaves, 0)),
      ).toBe(false)
    }
  })

  it('one FILL leaf per fill of an open assignment by its executor, in intent id order', () => {
    const b = block()
    const f = b.fills[0]!
    const second = { ...f, intentId: `0x${'01'.repeat(32)}` as Hex }
    const a = (over: Partial<AssignmentState>): AssignmentState => ({
      intentId: f.intentId,
      chainId: 902n,
      executor: f.executor,
      deadline: 0n,
      height: 1n,
      user: hex(20, 50) as Address,
      destinationChainIds: [902n],
      outputToken: hex(20, 51) as Address,
      outputAmount: 990n,
      recipient: hex(20, 52) as Address,
      originChainId: 901n,
      fillDeadline: 0n,
      inputToken: hex(20, 53) as Address,
      inputAmount: 1000n,
      avoid: [],
      ...over,
    })
    const assignments = new Map<Hex, AssignmentState>([
      [f.intentId, a({})],
      [second.intentId, a({ intentId: second.intentId, outputAmount: 5n, originChainId: 903n })],
    ])
    // 902 has settlement contracts (a settler records who filled), 903 does not.
    const rollups = [
      { chainId: 902, name: 'b', type: 'zk', securityBps: 9500, settlement: {} },
      { chainId: 903, name: 'c', type: 'zk', securityBps: 9500 },
    ] as unknown as AppState['rollups']
    const leaves = settlementLeaves({ assignments, rollups, validators: [] }, [
      f,
      second,
      { ...f, intentId: hex(32, 999) },
    ])
    expect(leaves).toEqual([
      {
        kind: 1,
        orderId: second.intentId,
        originChainId: 903n,
        destinationChainId: 902n,
        executor: f.executor,
        token: hex(20, 51),
        amount: 5n,
        recipient: hex(20, 52),
      },
      {
        kind: 1,
        orderId: f.intentId,
        originChainId: 901n,
        destinationChainId: 902n,
        executor: f.executor,
        token: hex(20, 51),
        amount: 990n,
        recipient: hex(20, 52),
      },
    ])
    // A fill by another executor, or on another chain, is no committed fill: no leaf.
    expect(
      settlementLeaves({ assignments, rollups, validators: [] }, [
        { ...f, executor: hex(20, 77) as Address },
      ]),
    ).toEqual([])
    expect(settlementLeaves({ assignments, rollups, validators: [] }, [{ ...f, chainId: 901n }])).toEqual([])
  })

  it('a fill by the executor an intent was taken from, on a settled destination, is the FILL leaf, naming that executor', () => {
    const b = block()
    const f = b.fills[0]!
    const old = hex(20, 77) as Address
    const assignment: AssignmentState = {
      intentId: f.intentId,
      chainId: 902n,
      executor: f.executor,
      deadline: 0n,
      height: 1n,
      user: hex(20, 50) as Address,
      destinationChainIds: [902n, 903n],
      outputToken: hex(20, 51) as Address,
      outputAmount: 990n,
      recipient: hex(20, 52) as Address,
      originChainId: 901n,
      fillDeadline: 0n,
      inputToken: hex(20, 53) as Address,
      inputAmount: 1000n,
      avoid: [old],
    }
    const assignments = new Map<Hex, AssignmentState>([[f.intentId, assignment]])
    const rollups = [
      { chainId: 902, name: 'b', type: 'zk', securityBps: 9500, settlement: {} },
      { chainId: 903, name: 'c', type: 'zk', securityBps: 9500 },
    ] as unknown as AppState['rollups']
    // Its fill landed on 902 after the intent moved (the new assignee's fill reverts AlreadyFilled there):
    // apply commits it, and the leaf must repay the one who paid the recipient, or the escrow stays open.
    expect(settlementLeaves({ assignments, rollups, validators: [] }, [{ ...f, executor: old }])).toEqual([
      {
        kind: 1,
        orderId: f.intentId,
        originChainId: 901n,
        destinationChainId: 902n,
        executor: old,
        token: hex(20, 51),
        amount: 990n,
        recipient: hex(20, 52),
      },
    ])
    // On a destination without a settler nothing records who filled: no leaf, as apply commits none.
    expect(
      settlementLeaves({ assignments, rollups, validators: [] }, [{ ...f, executor: old, chainId: 903n }]),
    ).toEqual([])
  })
})

const SIGNERS = [1, 2, 3, 4].map((i) =>
  privateKeyToAccount(`0x${(BigInt(i) * 7919n).toString(16).padStart(64, '0')}`),
)
const NETWORK = 'settlement-test'

async function certified(b: Block, signers = SIGNERS) {
  const set = new Map(SIGNERS.map((s, i) => [s.address.toLowerCase() as Address, BigInt(100 + i)]))
  const withSet = { ...b, validatorsHash: validatorSetHash(set) }
  const hash = blockHash(withSet)
  const votes = await Promise.all(
    signers.map((s, i) =>
      signVote(s, NETWORK, {
        kind: 'precommit',
        height: b.height,
        round: 3,
        blockHash: hash,
        timestampMs: 1_900_000_000_000 + i,
        extension: i === 0 ? new Uint8Array() : Uint8Array.of(i),
      }),
    ),
  )
  return { block: withSet, hash, set, certificate: certificateFromVotes(votes) }
}

describe('the commit proof', () => {
  it('carries the header, the certificate with extension hashes, the set ascending; it ABI-encodes', async () => {
    const { block: b, hash, set, certificate } = await certified(block())
    expect((await verifyCertificate(certificate, set, b.height, 3, hash, NETWORK)).ok).toBe(true)
    const proof = toCommitProof(b, certificate, validatorSetValues(set))
    expect(headerHash(proof.header)).toBe(hash)
    expect(
      keccak256(
        encodeAbiParameters([{ type: 'address[]' }, { type: 'uint256[]' }], [proof.validators, proof.powers]),
      ),
    ).toBe(proof.header.validatorsHash)
    expect(proof.validators).toEqual([...proof.validators].sort())
    expect(proof.certificate.round).toBe(3)
    const byValidator = new Map(certificate.precommits.map((p) => [p.validator, p]))
    for (const p of proof.certificate.precommits) {
      const ext = byValidator.get(p.validator)!.extension
      expect(p.extensionHash).toBe(ext.length === 0 ? ZERO32 : keccak256(ext))
    }
    expect(encodeAbiParameters([COMMIT_PROOF_TUPLE], [proof]).length).toBeGreaterThan(2 + 2 * 288)
    expect(() => toCommitProof(b, { ...certificate, height: 8n }, validatorSetValues(set))).toThrow()
  })
})

describe('GET /v1/settlement/:height', () => {
  /** The node's API server with the settlement route (not listening: requests are injected). */
  async function serve(source: SettlementSource) {
    const server = new ApiServer(
      { host: '127.0.0.1', port: 0 },
      { node: {} as ApiNode, log: pino({ level: 'silent' }), routes: [settlementRoutes(source)] },
    )
    await server.app.ready()
    return server.app
  }

  it('gives the header, leaves with proofs, the certificate and the set; 400, 404, 409', async () => {
    const leaves = [leaf(1), leaf(2), leaf(3)]
    const c = await certified(block({ settlementRoot: settlementRoot(leaves) }), SIGNERS.slice(0, 3))
    const setValues = validatorSetValues(c.set)
    const bytes = encodeBlock(c.block)
    const source: SettlementSource = {
      block: async (h) =>
        h === 7n
          ? { bytes, hash: c.hash, certificate: c.certificate }
          : h === 8n
            ? { bytes, hash: c.hash, certificate: undefined }
            : undefined,
      leaves: async (h) => (h === 7n ? leaves : []),
      validatorSet: async (hash) => (hash === c.block.validatorsHash ? setValues : undefined),
    }
    const app = await serve(source)
    try {
      const res = await app.inject({ method: 'GET', url: '/v1/settlement/7' })
      expect(res.statusCode).toBe(200)
      const body = res.json()
      expect(body.height).toBe('7')
      expect(body.blockHash).toBe(c.hash)
      expect(body.settlementRoot).toBe(c.block.settlementRoot)
      const h = body.header
      const header: BlockHeader = { ...h, height: BigInt(h.height), timeMs: BigInt(h.timeMs) }
      expect(keccak256(encodeAbiParameters(HEADER_ABI, [header]))).toBe(c.hash)
      expect(body.leaves).toHaveLength(3)
      for (const [i, l] of body.leaves.entries()) {
        expect(l.kind).toBe('fill')
        const values = leafValues(leaves[i]!)
        expect([
          l.orderId,
          l.originChainId,
          l.destinationChainId,
          l.executor,
          l.token,
          l.amount,
          l.recipient,
        ]).toEqual(values.slice(1).map(String))
        expect(StandardMerkleTree.verify(h.settlementRoot, [...LEAF_ENCODING], values, l.proof)).toBe(true)
      }
      expect(body.certificate.round).toBe(3)
      expect(body.certificate.precommits.map((p: { validator: string }) => p.validator)).toEqual(
        c.certificate.precommits.map((p) => p.validator),
      )
      expect(body.certificate.precommits[0].signature).toBe(c.certificate.precommits[0]!.signature)
      expect(body.validators).toEqual(setValues.validators)
      expect(body.powers).toEqual(setValues.powers.map(String))

      const code = async (url: string) => {
        const r = await app.inject({ method: 'GET', url })
        return [r.statusCode, r.json().error?.code]
      }
      expect(await code('/v1/settlement/abc')).toEqual([400, 'MALFORMED'])
      expect(await code('/v1/settlement/18446744073709551616')).toEqual([400, 'MALFORMED'])
      expect(await code('/v1/settlement/0')).toEqual([404, 'NOT_FOUND'])
      expect(await code('/v1/settlement/9')).toEqual([404, 'NOT_FOUND'])
      expect(await code('/v1/settlement/8')).toEqual([409, 'NOT_CERTIFIED'])
    } finally {
      await app.close()
    }
  })
})
