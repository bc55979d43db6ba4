import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadKeys } from '../src/identity/keys.ts'
import { type Genesis, type GenesisInput, genesisToJson, parseGenesis } from '../src/node/genesis.ts'

export interface NetworkNode {
  index: number
  dataDir: string
  peerId: string
  address: `0x${string}`
  validatorPrivateKey: `0x${string}`
}

export interface PreparedNetwork {
  dir: string
  genesisPath: string
  genesis: Genesis
  nodes: NetworkNode[]
}

export interface PrepareOptions {
  dir: string
  nodes: number
  networkId?: string
  /** Rollups of the network; default three optimistic chains 901..903. */
  rollups?: GenesisInput['rollups']
  stake?: bigint
  params?: GenesisInput['params']
  /**
   * Balances in the staking token at genesis: a list, or 'validators' for 1 000 000 to each validator's
   * address. Default none.
   */
  accounts?: GenesisInput['accounts'] | 'validators'
}

/** Generates keys for `nodes` nodes under `dir/node-<i>` and writes `dir/genesis.json`. */
export async function prepareNetwork(opts: PrepareOptions): Promise<PreparedNetwork> {
  await mkdir(opts.dir, { recursive: true })
  const rollups = opts.rollups ?? [
    { chainId: 901, name: 'rollup-901', type: 'optimistic', securityBps: 8000 },
    { chainId: 902, name: 'rollup-902', type: 'zk', securityBps: 9500 },
    { chainId: 903, name: 'rollup-903', type: 'optimistic', securityBps: 8000 },
  ]
  const nodes: NetworkNode[] = []
  for (let i = 0; i < opts.nodes; i++) {
    const dataDir = join(opts.dir, `node-${i}`)
    const k = await loadKeys(dataDir, { create: true })
    nodes.push({
      index: i,
      dataDir,
      peerId: k.peerId,
      address: k.validator.address.toLowerCase() as `0x${string}`,
      validatorPrivateKey: k.validatorPrivateKey,
    })
  }
  const genesisInput: GenesisInput = {
    networkId: opts.networkId ?? `devnet-${process.pid}-${Date.now().toString(36)}`,
    genesisTime: Math.floor(Date.now() / 1000),
    validators: nodes.map((n) => ({
      address: n.address,
      peerId: n.peerId,
      stake: (opts.stake ?? 1_000_000n).toString(),
      pools: rollups.map((r) => r.chainId),
    })),
    delegations: [],
    accounts:
      opts.accounts === 'validators'
        ? nodes.map((n) => ({ address: n.address, balance: '1000000' }))
        : (opts.accounts ?? []),
    rollups,
    ...(opts.params === undefined ? {} : { params: opts.params }),
  }
  const genesis = parseGenesis(genesisInput)
  const genesisPath = join(opts.dir, 'genesis.json')
  await writeFile(genesisPath, JSON.stringify(genesisToJson(genesis), null, 2) + '\n')
  return { dir: opts.dir, genesisPath, genesis, nodes }
}
