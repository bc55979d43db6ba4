/**
 * Valid messages of every wire type, signed with the node's own code, as the seeds the fuzzers mutate:
 * a fuzzer that starts from a valid encoding gets past the version byte and the CBOR header to the
 * field checks, the signature recovery and the validators behind them.
 */
import type { Address, Hex } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import { encodeSignedIntent, type SignedIntent, signedIntentToJson } from '../../src/codec/intent.ts'
import {
  BLOCKS_BY_RANGE_PROTOCOL,
  blockHashOfBytes,
  encodeBlock,
  encodeCertificate,
  encodeStoredBlock,
} from '../../src/consensus/block.ts'
import { CONSENSUS_MESSAGES_PROTOCOL, consensusMessageCodec } from '../../src/consensus/messages.ts'
import { signProposal, signVote } from '../../src/consensus/votes.ts'
import { fastAccount } from '../../src/crypto/sign.ts'
import { MEMPOOL_GET_PROTOCOL, MEMPOOL_IDS_PROTOCOL, packIds } from '../../src/mempool/wire.ts'
import { parseGenesis } from '../../src/node/genesis.ts'
import { STATUS_PROTOCOL } from '../../src/p2p/protocols.ts'
import { probeCodec } from '../../src/p2p/topics.ts'
import { fillBatchCodec, fillCodec, type SignedFill, signFill } from '../../src/rollups/fill.ts'
import {
  healthReportCodec,
  type SignedHealthReport,
  signHealthReport,
} from '../../src/rollups/health-report.ts'
import { encodeExtension, encodeObservations } from '../../src/rollups/observation.ts'
import { signedMessageToJson, signTransfer, TRANSFER_KIND } from '../../src/staking/accounts.ts'
import { DELEGATE_KIND, signDelegate } from '../../src/staking/delegations.ts'
import { signStakeMove } from '../../src/staking/moves.ts'
import { signedStakeMoveToJson } from '../../src/staking/service.ts'
import { signedUnjailToJson, signUnjail } from '../../src/staking/unjail.ts'
import { stakeMoveCodec } from '../../src/staking/wire.ts'
import { accountMessageCodec, accountMessageToJson } from '../../src/staking/wire-accounts.ts'
import { genesisState } from '../../src/state/genesis.ts'
import { commitFor, firstBlock, nextBlock, observation } from '../helpers/commit.ts'
import { makeIntent } from '../helpers/intents.ts'

const DEFAULT_SEED_NETWORK = 'fuzz-net'
const key = (i: number): Hex => `0x${(BigInt(i) * 7_919n + 11n).toString(16).padStart(64, '0')}`
/** Fixed keys, so seeds are the same every run (fast-check replays by seed). */
export const SEED_ACCOUNTS: PrivateKeyAccount[] = [1, 2, 3, 4].map((i) => fastAccount(key(i)))
const lower = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address
const H = (b: number): Hex => `0x${b.toString(16).padStart(2, '0').repeat(32)}`

/** The valid encodings and JSON bodies of every type, built once per test file. */
export interface Seeds {
  intents: SignedIntent[]
  intentBytes: Uint8Array[]
  intentJson: unknown[]
  blockBytes: Uint8Array[]
  certBytes: Uint8Array[]
  storedBlocks: Uint8Array[]
  observations: Uint8Array[]
  extensions: Uint8Array[]
  /** Encoded by codec name (a topic's or a protocol's request/response). */
  codec: Record<string, Uint8Array[]>
  stakeJson: unknown[]
  unjailJson: unknown[]
  transferJson: unknown[]
  delegateJson: unknown[]
}

/**
 * Seeds of network `networkId`, signed by `accounts` (the first one proposes; give a node's own validator
 * key first so that its messages pass the signer checks of that node's validators).
 */
export async function buildSeeds(
  networkId = DEFAULT_SEED_NETWORK,
  accounts: readonly PrivateKeyAccount[] = SEED_ACCOUNTS,
): Promise<Seeds> {
  const all = [...accounts, ...SEED_ACCOUNTS].slice(0, 4)
  const [a, b, c, d] = all as [PrivateKeyAccount, PrivateKeyAccount, PrivateKeyAccount, PrivateKeyAccount]
  const nowMs = Date.now()
  const genesis = parseGenesis({
    networkId: networkId,
    genesisTime: Math.floor(nowMs / 1000) - 100,
    validators: all.map((v, i) => ({
      address: v.address,
      peerId: `peer-${i}`,
      stake: '10',
      pools: [901, 902],
    })),
    rollups: [
      { chainId: 901, name: 'alpha', type: 'optimistic', securityBps: 8000 },
      { chainId: 902, name: 'beta', type: 'zk', securityBps: 9500 },
    ],
  })
  const s1 = firstBlock(genesisState(genesis), a, nowMs - 2000)
  const intents = await Promise.all([makeIntent(a), makeIntent(b, { inputAmount: 5n, outputAmount: 4n })])
  const s2 = await nextBlock(
    s1.state,
    all,
    {},
    {
      pending: intents.map((i) => ({ intent: i.intent, id: i.id })),
    },
  )
  const commit = await commitFor(s2.state, all)
  const blocks = [s1.block, s2.block].map(encodeBlock)
  const certs = [s2.lastCommit!, commit].map(encodeCertificate)
  const obs = [observation(901n), observation(902n, { status: 2 })]
  const ext = encodeExtension({
    observations: obs,
    balances: [{ chainId: 901n, token: lower(c), amount: 10n ** 18n }],
  })

  const proposal = await signProposal(a, networkId, {
    height: 2n,
    round: 0,
    blockHash: blockHashOfBytes(blocks[1]!),
    validRound: -1,
  })
  const votes = await Promise.all([
    signVote(b, networkId, { kind: 'prevote', height: 2n, round: 0, blockHash: proposal.blockHash }),
    signVote(c, networkId, { kind: 'precommit', height: 2n, round: 1, blockHash: null }),
    signVote(d, networkId, {
      kind: 'precommit',
      height: 2n,
      round: 0,
      blockHash: proposal.blockHash,
      timestampMs: nowMs,
      extension: ext,
    }),
  ])
  const consensus = [
    consensusMessageCodec.encode({ type: 'proposal', proposal, block: blocks[1]! }),
    ...votes.map((vote) => consensusMessageCodec.encode({ type: 'vote', vote })),
  ]
  const fills: SignedFill[] = await Promise.all(
    intents.map((i, n) =>
      signFill(c, networkId, {
        intentId: i.id,
        chainId: 902n,
        txHash: H(0x10 + n),
        blockNumber: 77n + BigInt(n),
        blockHash: H(0x20 + n),
        executor: lower(c),
      }),
    ),
  )
  const health: SignedHealthReport = await signHealthReport(a, networkId, {
    validator: lower(a),
    chainId: 901n,
    blockNumber: 100n,
    gasUsed: 10_000_000n,
    gasLimit: 30_000_000n,
    gasUsedRatioBps: 3333,
    baseFeeWei: 1_000_000_000n,
    blockTimeMs: 1000,
    latencyMs: 12,
    status: 0,
    timestampMs: BigInt(nowMs),
  })
  const move = await signStakeMove(a, networkId, {
    staker: lower(a),
    fromChainId: 901n,
    toChainId: 902n,
    amount: 3n,
    durationBlocks: 10n,
    nonce: 1n,
  })
  const unjail = await signUnjail(b, networkId, { validator: lower(b), nonce: 1n })
  const transfer = await signTransfer(a, networkId, { from: lower(a), to: lower(b), amount: 1n, nonce: 1n })
  const delegate = await signDelegate(c, networkId, {
    delegator: lower(c),
    validator: lower(a),
    chainId: 901n,
    amount: 2n,
    nonce: 1n,
  })
  const ids = intents.map((i) => i.id)
  const synced = [{ bytes: blocks[1]!, certificate: commit }]

  const codec: Record<string, Uint8Array[]> = {
    probe: [probeCodec.encode({ seq: 3, origin: 'peer-x', sentAtMs: nowMs, padding: new Uint8Array(40) })],
    intents: [
      (await import('../../src/mempool/wire.ts')).intentBatchCodec.encode(intents.map((i) => i.intent)),
    ],
    health: [healthReportCodec.encode(health)],
    fill: fills.map((f) => fillCodec.encode(f)),
    fills: [fillBatchCodec.encode(fills)],
    consensus,
    stake: [
      stakeMoveCodec.encode(move),
      stakeMoveCodec.encode(unjail),
      stakeMoveCodec.encode(transfer),
      accountMessageCodec.encode(delegate),
    ],
    'status.request': [STATUS_PROTOCOL.request.encode({ height: 12 })],
    'status.response': [
      STATUS_PROTOCOL.response.encode({
        peerId: 'peer-0',
        networkId: networkId,
        version: '0.1.0',
        height: 2,
        blockHash: H(1),
        peers: [{ peerId: 'peer-1', addrs: ['/ip4/127.0.0.1/tcp/1'] }],
      }),
    ],
    'mempool-ids.request': [
      MEMPOOL_IDS_PROTOCOL.request.encode({ after: packIds([ids[0]!]) }),
      MEMPOOL_IDS_PROTOCOL.request.encode({ after: new Uint8Array(0) }),
    ],
    'mempool-ids.response': [MEMPOOL_IDS_PROTOCOL.response.encode({ ids: packIds(ids), more: true })],
    'mempool-get.request': [MEMPOOL_GET_PROTOCOL.request.encode({ ids: packIds(ids) })],
    'mempool-get.response': [MEMPOOL_GET_PROTOCOL.response.encode(intents.map((i) => i.intent))],
    'blocks-by-range.request': [BLOCKS_BY_RANGE_PROTOCOL.request.encode({ from: 1n, count: 2 })],
    'blocks-by-range.response': [BLOCKS_BY_RANGE_PROTOCOL.response.encode(synced)],
    'consensus-messages.request': [CONSENSUS_MESSAGES_PROTOCOL.request.encode({ height: 2n })],
    'consensus-messages.response': [
      CONSENSUS_MESSAGES_PROTOCOL.response.encode([
        { type: 'proposal', proposal, block: blocks[1]! },
        ...votes.map((vote) => ({ type: 'vote' as const, vote })),
      ]),
    ],
  }
  return {
    intents: intents.map((i) => i.intent),
    intentBytes: intents.map((i) => encodeSignedIntent(i.intent)),
    intentJson: intents.map((i) => signedIntentToJson(i.intent)),
    blockBytes: blocks,
    certBytes: certs,
    storedBlocks: blocks.map((bb, i) => encodeStoredBlock(bb, certs[i]!)),
    observations: [encodeObservations(obs)],
    extensions: [ext],
    codec,
    stakeJson: [signedStakeMoveToJson(move)],
    unjailJson: [signedUnjailToJson(unjail)],
    transferJson: [signedMessageToJson(TRANSFER_KIND, transfer), accountMessageToJson(transfer)],
    delegateJson: [signedMessageToJson(DELEGATE_KIND, delegate)],
  }
}
