/**
 * Light-client rotation (issue 10; docs/settlement.md, MurmurLightClient): before a claim or a refund
 * against a block, the origin's light client must trust the set that signed it. When it does not, the
 * relayer sends `rotate` with each certified boundary block (heights that are multiples of `epochBlocks`)
 * between the client's latest rotation and that block whose next set differs, one epoch at a time (the
 * contract accepts a rotation only from its current set).
 */
import type { Logger } from 'pino'
import {
  type Address,
  encodeAbiParameters,
  encodeFunctionData,
  type Hex,
  keccak256,
  type PublicClient,
} from 'viem'
import { murmurLightClientAbi } from '../contracts/abi.ts'
import { type CertifiedSettlement, certifiedSettlement, type SettlementSource } from '../state/settlement.ts'
import type { TxJob, TxResult } from './executor.ts'

export interface Rotator {
  /** An RPC client of the origin rollup. */
  readonly client: PublicClient
  readonly lightClient: Address
  readonly chainId: bigint
  /** Genesis `params.epochBlocks`. */
  readonly epochBlocks: number
  readonly source: SettlementSource
  /** The executor's settlement jobs. */
  readonly transact: (job: TxJob) => Promise<TxResult>
  readonly log: Logger
}

async function evidence(source: SettlementSource, height: bigint): Promise<CertifiedSettlement> {
  const r = await certifiedSettlement(source, height)
  if (!r.ok) throw new Error(`no settlement evidence for block ${height}: ${r.code}: ${r.message}`)
  return r.value
}

/**
 * Makes the origin's light client trust `validatorsHash` (the set that signed block `height`), relaying
 * the rotations it lacks. Throws when the client still does not trust it afterwards.
 */
export async function ensureTrusted(r: Rotator, validatorsHash: Hex, height: bigint): Promise<void> {
  const read = <T>(
    functionName: 'isTrusted' | 'latestHeight' | 'currentValidatorsHash',
    args: unknown[] = [],
  ) =>
    r.client.readContract({
      address: r.lightClient,
      abi: murmurLightClientAbi,
      functionName,
      args,
    } as never) as Promise<T>
  if (await read<boolean>('isTrusted', [validatorsHash])) return
  const epoch = BigInt(r.epochBlocks)
  let current = (await read<Hex>('currentValidatorsHash')).toLowerCase()
  const latest = await read<bigint>('latestHeight')
  for (let b = (latest / epoch + 1n) * epoch; b < height; b += epoch) {
    const e = await evidence(r.source, b)
    if (e.block.validatorsHash !== current || e.block.nextValidatorsHash === e.block.validatorsHash) continue
    const rotation = await r.transact({
      kind: 'rotate',
      // One job per (origin, boundary block): rotations of one block on two chains are two jobs.
      id: keccak256(encodeAbiParameters([{ type: 'uint256' }, { type: 'bytes32' }], [r.chainId, e.hash])),
      chainId: r.chainId,
      call: {
        to: r.lightClient,
        value: 0n,
        data: encodeFunctionData({
          abi: murmurLightClientAbi,
          functionName: 'rotate',
          args: [e.proof as never],
        }),
      },
    })
    r.log.info({ chainId: r.chainId.toString(), height: b, txHash: rotation.txHash }, 'light client rotated')
    current = e.block.nextValidatorsHash
    if (current === validatorsHash) return
  }
  if (!(await read<boolean>('isTrusted', [validatorsHash])))
    throw new Error(
      `light client of ${r.chainId} does not trust ${validatorsHash} after rotating to ${current}`,
    )
}
