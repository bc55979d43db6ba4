/**
 * Deploying a network's settlement contracts from its genesis (INTERFACES.md, "Settlement contracts":
 * `murmur contracts deploy`, and `devnet up`): one {@link deploySettlement} per rollup with the genesis
 * validator set, the network salt and `params.refundGraceSec`, then `rollups[i].settlement` written back
 * into the genesis file.
 *
 * Contract addresses depend only on the deployer and its nonce (CREATE), so one key whose nonce is the
 * same on every rollup (a fresh key: 0) gets the same three addresses on every chain.
 */
import { readFile, writeFile } from 'node:fs/promises'
import type { Address, Hex } from 'viem'
import { networkSalt } from '../codec/eip712.ts'
import {
  type DeployClients,
  deployClients,
  deploySettlement,
  type SettlementDeployment,
} from '../contracts/deploy.ts'
import { MurmurError } from '../errors.ts'
import { genesisState } from '../state/genesis.ts'
import { validatorSetValues } from '../state/settlement.ts'
import { type Genesis, parseGenesis } from './genesis.ts'

export type SettlementDeployErrorCode = 'UNREACHABLE' | 'WRONG_CHAIN' | 'UNKNOWN_ROLLUP'
/** A rollup could not be deployed on (not reached, another chain id, not in the genesis). */
export class SettlementDeployError extends MurmurError<SettlementDeployErrorCode> {}

/** What the light clients start with: the genesis consensus set (addresses ascending, powers = stake). */
export function genesisValidatorSet(genesis: Genesis): {
  validators: readonly Address[]
  powers: readonly bigint[]
} {
  return validatorSetValues(genesisState(genesis).consensusSet)
}

export interface NetworkDeployOptions {
  genesis: Genesis
  /** RPC URL by chain id; every chain id must be a genesis rollup. */
  rpcUrls: ReadonlyMap<number, string>
  privateKey: Hex
  /** Also deploy the open-mint TestToken on every rollup (test networks only). */
  testToken?: boolean
  /** One line per rollup, when it starts and when it is done. */
  onProgress?: (line: string) => void
}

/**
 * Deploys on every rollup of `rpcUrls`, one after the other (a failure stops before the next chain);
 * returns the deployments by chain id. Every RPC is checked first (reachable, the chain id it claims).
 */
export async function deployNetworkSettlement(
  o: NetworkDeployOptions,
): Promise<Map<number, SettlementDeployment>> {
  const known = new Set(o.genesis.rollups.map((r) => r.chainId))
  const clients = new Map<number, DeployClients>()
  for (const [chainId, url] of o.rpcUrls) {
    if (!known.has(chainId))
      throw new SettlementDeployError('UNKNOWN_ROLLUP', `rollup ${chainId} is not in the genesis`)
    let c: DeployClients
    try {
      c = await deployClients(url, o.privateKey)
    } catch (err) {
      throw new SettlementDeployError(
        'UNREACHABLE',
        `rollup ${chainId}: cannot reach ${url}: ${firstLine(err)}`,
      )
    }
    if (c.wallet.chain.id !== chainId)
      throw new SettlementDeployError(
        'WRONG_CHAIN',
        `rollup ${chainId}: ${url} is chain ${c.wallet.chain.id}`,
      )
    clients.set(chainId, c)
  }
  const set = genesisValidatorSet(o.genesis)
  const params = {
    networkSalt: networkSalt(o.genesis.networkId),
    validators: set.validators,
    powers: set.powers,
    refundGraceSec: o.genesis.params.refundGraceSec,
    testToken: o.testToken ?? false,
  }
  const out = new Map<number, SettlementDeployment>()
  for (const [chainId, c] of clients) {
    o.onProgress?.(`rollup ${chainId}: deploying from ${c.wallet.account.address.toLowerCase()}...`)
    let d: SettlementDeployment
    try {
      d = await deploySettlement(c, params)
    } catch (err) {
      if (err instanceof MurmurError) throw err
      throw new SettlementDeployError('UNREACHABLE', `rollup ${chainId}: ${firstLine(err)}`)
    }
    out.set(chainId, d)
    o.onProgress?.(
      `rollup ${chainId}: settler ${d.settler} lightClient ${d.lightClient}` +
        (d.token === undefined ? '' : ` token ${d.token}`),
    )
  }
  return out
}

/**
 * Sets `rollups[i].settlement = {settler, lightClient}` for every deployed chain in the genesis file at
 * `path`, leaving every other field as the file had it; the file is written as genesisToJson's output is
 * (two-space JSON and a newline) and must still be a valid genesis.
 */
export async function writeGenesisSettlement(
  path: string,
  deployments: ReadonlyMap<number, SettlementDeployment>,
  edit?: (json: Record<string, unknown>) => void,
): Promise<Genesis> {
  const json = JSON.parse(await readFile(path, 'utf8')) as {
    rollups?: Array<{ chainId: number; settlement?: unknown }>
  } & Record<string, unknown>
  for (const r of json.rollups ?? []) {
    const d = deployments.get(r.chainId)
    if (d !== undefined) r.settlement = { settler: d.settler, lightClient: d.lightClient }
  }
  edit?.(json)
  const genesis = parseGenesis(json, path)
  await writeFile(path, JSON.stringify(json, null, 2) + '\n')
  return genesis
}

/** The JSON `murmur contracts deploy` prints: `{"<chainId>": {settler, lightClient, token?}}`. */
export function deploymentsJson(
  deployments: ReadonlyMap<number, SettlementDeployment>,
): Record<string, SettlementDeployment> {
  return Object.fromEntries([...deployments].map(([id, d]) => [String(id), d]))
}

function firstLine(err: unknown): string {
  const e = err as { shortMessage?: string; message?: string }
  return (e.shortMessage ?? e.message ?? String(err)).split('\n')[0]!
}
