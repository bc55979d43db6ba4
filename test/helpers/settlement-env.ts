/**
 * Anvil rollups with the settlement contracts deployed (contract tests and bench/gas.ts): real anvil
 * processes from devnet/anvil.ts, switched to automine so each transaction is mined when sent, and time
 * moved with evm_increaseTime, never waited for.
 */
import {
  type Abi,
  type Account,
  type Address,
  BaseError,
  type Chain,
  ContractFunctionRevertedError,
  createPublicClient,
  createWalletClient,
  type Hex,
  http,
  type PublicClient,
  type TransactionReceipt,
  type Transport,
  type WalletClient,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { networkSalt } from '../../src/codec/eip712.ts'
import { deploySettlement, rollupChain, type SettlementDeployment } from '../../src/contracts/deploy.ts'
import { TEST_NETWORK_ID, type ValidatorSet } from './settlement.ts'

/** The funded accounts of the environment, by role (the same keys on every chain). */
export const ROLES = ['deployer', 'user', 'executor', 'recipient', 'relayer', 'owner'] as const
export type Role = (typeof ROLES)[number]

/** One rollup: its clients, a wallet per role, and the deployed contracts. */
export interface SettlementChain {
  chainId: bigint
  rpcUrl: string
  pub: PublicClient
  wallets: Record<Role, WalletClient<Transport, Chain, Account>>
  addresses: Record<Role, Address>
  contracts: Required<SettlementDeployment>
}

export interface SettlementEnv {
  rollups: Rollups
  chains: SettlementChain[]
  stop(): Promise<void>
}

/** One JSON-RPC call; throws with the error message of an error answer. */
export async function rpc(url: string, method: string, params: unknown[] = []): Promise<unknown> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    signal: AbortSignal.timeout(10_000),
  })
  const json = (await res.json()) as { result?: unknown; error?: { message: string } }
  if (json.error) throw new Error(`${method}: ${json.error.message}`)
  return json.result
}

/**
 * Starts `count` rollups (chain ids 901, 902, ...), funds the role accounts, deploys the light client with
 * `set`, the settler and a test token on each (same deployer nonce everywhere, so the same addresses).
 */
export async function startSettlementEnv(
  set: ValidatorSet,
  opts: { count?: number; refundGraceSec?: bigint } = {},
): Promise<SettlementEnv> {
  const rollups = await startRollups({
    count: opts.count ?? 2,
    accounts: ROLES.length,
    accountSeed: 'contracts',
  })
  try {
    const chains: SettlementChain[] = []
    for (const r of rollups.rollups) {
      // Instant mining: a contract test needs its transaction's block, not the next interval's.
      await rpc(r.rpcUrl, 'evm_setAutomine', [true])
      const chain = rollupChain(r.chainId, r.rpcUrl)
      const transport = http(r.rpcUrl)
      const pub = createPublicClient({ chain, transport, pollingInterval: 50 }) as PublicClient
      const wallets = {} as SettlementChain['wallets']
      const addresses = {} as SettlementChain['addresses']
      ROLES.forEach((role, i) => {
        const account = privateKeyToAccount(rollups.accounts[i]!.privateKey)
        wallets[role] = createWalletClient({ account, chain, transport })
        addresses[role] = account.address.toLowerCase() as Address
      })
      const contracts = await deploySettlement(
        { wallet: wallets.deployer, public: pub },
        {
          networkSalt: networkSalt(TEST_NETWORK_ID),
          validators: set.validators,
          powers: set.powers,
          refundGraceSec: opts.refundGraceSec ?? 600n,
          testToken: true,
        },
      )
      chains.push({
        chainId: BigInt(r.chainId),
        rpcUrl: r.rpcUrl,
        pub,
        wallets,
        addresses,
        contracts: contracts as Required<SettlementDeployment>,
      })
    }
    return { rollups, chains, stop: () => rollups.stop() }
  } catch (err) {
    await rollups.stop()
    throw err
  }
}

/** The chain's latest block timestamp (seconds). */
export async function chainTime(chain: SettlementChain): Promise<number> {
  const block = await chain.pub.getBlock({ blockTag: 'latest' })
  return Number(block.timestamp)
}

/** Moves the chain's clock `seconds` ahead and mines a block at the new time. */
export async function advanceTime(chain: SettlementChain, seconds: number): Promise<void> {
  await rpc(chain.rpcUrl, 'evm_increaseTime', [seconds])
  await rpc(chain.rpcUrl, 'evm_mine', [])
}

/** A contract call: what `send` and `expectRevert` take. */
export interface Call {
  address: Address
  abi: Abi | readonly unknown[]
  functionName: string
  args?: readonly unknown[]
  value?: bigint
}

/**
 * Sends a call from `wallet` and waits for its receipt; throws when it reverts (simulated first, so the
 * thrown error carries the decoded custom error).
 */
export async function send(
  chain: SettlementChain,
  wallet: WalletClient<Transport, Chain, Account>,
  call: Call,
): Promise<TransactionReceipt> {
  const { request } = await chain.pub.simulateContract({ ...(call as any), account: wallet.account })
  const hash = await wallet.writeContract(request as any)
  const receipt = await chain.pub.waitForTransactionReceipt({ hash, pollingInterval: 50 })
  if (receipt.status !== 'success') throw new Error(`${call.functionName}: transaction ${hash} reverted`)
  return receipt
}

/** The custom error name (and args) a failed call reverted with, or undefined when it did not revert. */
export async function revertOf(
  chain: SettlementChain,
  wallet: WalletClient<Transport, Chain, Account>,
  call: Call,
): Promise<{ name: string; args: readonly unknown[] } | undefined> {
  try {
    await chain.pub.simulateContract({ ...(call as any), account: wallet.account })
    return undefined
  } catch (err) {
    if (err instanceof BaseError) {
      const reverted = err.walk((e) => e instanceof ContractFunctionRevertedError)
      if (reverted instanceof ContractFunctionRevertedError && reverted.data !== undefined) {
        return { name: reverted.data.errorName, args: reverted.data.args ?? [] }
      }
    }
    throw err
  }
}

/** ERC-20 balance, or the native balance for the zero address. */
export async function balanceOf(chain: SettlementChain, token: Address, who: Address): Promise<bigint> {
  if (BigInt(token) === 0n) return chain.pub.getBalance({ address: who })
  return (await chain.pub.readContract({
    address: token,
    abi: ERC20_BALANCE_ABI,
    functionName: 'balanceOf',
    args: [who],
  })) as bigint
}

const ERC20_BALANCE_ABI = [
  {
    type: 'function',
    name: 'balanceOf',
    stateMutability: 'view',
    inputs: [{ name: 'who', type: 'address' }],
    outputs: [{ name: '', type: 'uint256' }],
  },
] as const

/** Hex of the zero address. */
export const ZERO: Hex = '0x0000000000000000000000000000000000000000'
