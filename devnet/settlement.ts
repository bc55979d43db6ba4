/**
 * The devnet's settlement setup (issue 10, item 7): the contracts and the open-mint test token deployed on
 * every rollup from one fresh key (so at the same addresses everywhere), written into the devnet genesis
 * with the token declared as one asset, tokens minted to every wallet and every executor, and every
 * wallet's allowance to the settler. Also the ERC-20 intents the devnet's (and the scenarios') wallets send.
 */
import type { Address, Hex } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import {
  MAX_ALLOWANCE,
  type SendParams,
  sendTokenCalls,
  type TokenCall,
  tokenClients,
} from '../src/client/index.ts'
import { MurmurError } from '../src/errors.ts'
import type { Genesis } from '../src/node/genesis.ts'
import { deployNetworkSettlement, writeGenesisSettlement } from '../src/node/settlement-deploy.ts'

/** The asset the devnet declares for its test token, and the least spread its intents must leave. */
export const DEVNET_ASSET = { symbol: 'MUSD', minSpreadBps: 10 } as const
/** Spread the devnet's wallets leave their executors: 0.3 %, above the asset's minimum. */
export const DEVNET_SPREAD_BPS = 30n
/** Test tokens minted to every wallet and every executor on every rollup (one million, 18 decimals). */
export const DEVNET_MINT = 10n ** 24n
/** A short refund grace for a devnet: an unfilled order can be refunded without the network 2 min after its deadline. */
export const DEVNET_REFUND_GRACE_SEC = 120

/** What `devnet.json` records of the settlement setup; the scenarios send their intents with it. */
export interface DevnetSettlement {
  /** The test token, at the same address on every rollup. */
  token: Address
  /** Settler and light client by chain id (the same addresses on every rollup). */
  contracts: Record<string, { settler: Address; lightClient: Address }>
  /** Keys of the funded wallets (test keys, devnet only): minted to and approved on every rollup. */
  wallets: Hex[]
}

export class DevnetSettlementError extends MurmurError<'ADDRESSES_DIFFER' | 'FUND_FAILED'> {}

export interface SetupOptions {
  genesisPath: string
  genesis: Genesis
  rpcUrls: ReadonlyMap<number, string>
  /** A key funded on every rollup whose nonce is the same on each (a fresh key). */
  deployerKey: Hex
  /** Funded with native coin on every rollup already: they pay their own approvals. */
  wallets: readonly PrivateKeyAccount[]
  walletKeys: readonly Hex[]
  /** Validators' executor accounts (their validator addresses). */
  executors: readonly Address[]
  out: (line: string) => void
}

/**
 * Deploys on every rollup, writes the genesis (settlement per rollup, the token as asset {@link DEVNET_ASSET}),
 * mints to the executors (from the deployer) and to the wallets (each mints its own, then approves the
 * settler), every chain and account at once. Returns the genesis as written and the record for `devnet.json`.
 */
export async function setupDevnetSettlement(
  o: SetupOptions,
): Promise<{ genesis: Genesis; record: DevnetSettlement }> {
  const deployments = await deployNetworkSettlement({
    genesis: o.genesis,
    rpcUrls: o.rpcUrls,
    privateKey: o.deployerKey,
    testToken: true,
    onProgress: (line) => o.out(`devnet: ${line}`),
  })
  const first = [...deployments.values()][0]!
  for (const [chainId, d] of deployments)
    if (d.settler !== first.settler || d.token !== first.token)
      throw new DevnetSettlementError(
        'ADDRESSES_DIFFER',
        `rollup ${chainId} got other addresses than the first rollup`,
      )
  const token = first.token!
  const genesis = await writeGenesisSettlement(o.genesisPath, deployments, (json) => {
    json['assets'] = [
      {
        ...DEVNET_ASSET,
        tokens: Object.fromEntries([...deployments.keys()].map((id) => [String(id), token])),
      },
    ]
  })
  o.out(
    `devnet: minting ${DEVNET_ASSET.symbol} to ${o.executors.length} executors and ${o.wallets.length} wallets...`,
  )
  await Promise.all(
    [...o.rpcUrls.values()].flatMap((url) => [
      tokenClients(url, o.deployerKey).then((c) =>
        sendTokenCalls(
          c,
          o.executors.map((to): TokenCall => ({ fn: 'mint', token, to, amount: DEVNET_MINT })),
        ),
      ),
      ...o.walletKeys.map((key, i) =>
        tokenClients(url, key).then((c) =>
          sendTokenCalls(c, [
            { fn: 'mint', token, to: o.wallets[i]!.address, amount: DEVNET_MINT },
            { fn: 'approve', token, spender: first.settler, amount: MAX_ALLOWANCE },
          ]),
        ),
      ),
    ]),
  )
  const contracts = Object.fromEntries(
    [...deployments].map(([id, d]) => [String(id), { settler: d.settler, lightClient: d.lightClient }]),
  )
  return { genesis, record: { token, contracts, wallets: [...o.walletKeys] } }
}

/**
 * An ERC-20 intent of a devnet wallet: the test token escrowed on a random origin rollup, the same token
 * paid on `destinations` (empty: any rollup), `outputAmount` about one token and the input
 * {@link DEVNET_SPREAD_BPS} more, `originSettler` the origin's settler.
 */
export function erc20Intent(
  s: DevnetSettlement,
  to: Address,
  destinations: readonly bigint[],
  n: number,
): SendParams {
  const chains = Object.keys(s.contracts)
  const origin = chains[Math.floor(Math.random() * chains.length)]!
  const inputAmount = 10n ** 18n + BigInt(n)
  return {
    to,
    chains: destinations,
    originChainId: BigInt(origin),
    originSettler: s.contracts[origin]!.settler,
    inputToken: s.token,
    inputAmount,
    outputToken: s.token,
    amount: inputAmount - (inputAmount * DEVNET_SPREAD_BPS) / 10_000n,
    fillInSec: 120,
  }
}

/** Native coin `devnet fund` gives an address on every rollup, for gas (10 ETH). */
export const DEVNET_GAS_WEI = 10n * 10n ** 18n

/** Sets `address`'s native balance to {@link DEVNET_GAS_WEI} on every rollup (anvil_setBalance). */
export async function fundGas(rpcUrls: readonly string[], address: Address): Promise<void> {
  await Promise.all(
    rpcUrls.map(async (url) => {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'anvil_setBalance',
          params: [address, `0x${DEVNET_GAS_WEI.toString(16)}`],
        }),
        signal: AbortSignal.timeout(5_000),
      })
      const body = (await res.json()) as { error?: { message: string } }
      if (body.error !== undefined)
        throw new DevnetSettlementError('FUND_FAILED', `${url}: ${body.error.message}`)
    }),
  )
}
