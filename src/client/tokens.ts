/**
 * Wallet-side ERC-20 steps of a settled intent (INTERFACES.md, "Settlement contracts"): the origin settler
 * pulls `inputAmount` with the user's allowance when the executor opens the order, so a wallet approves
 * the settler once per token; on test networks it mints the open-mint TestToken first. Also the reads a
 * wallet checks its balances with.
 */
import type { Address, Hex } from 'viem'
import { testTokenAbi } from '../contracts/abi.ts'
import { type DeployClients, deployClients } from '../contracts/deploy.ts'
import { MurmurError } from '../errors.ts'

export type TokenErrorCode = 'UNREACHABLE' | 'TX_FAILED'
/** A token transaction could not be sent, or it reverted. */
export class TokenError extends MurmurError<TokenErrorCode> {}

/** The allowance that never runs out (OpenZeppelin's ERC-20 does not decrease it). */
export const MAX_ALLOWANCE = 2n ** 256n - 1n

/** One token call: `approve(spender, amount)` or `mint(to, amount)` (TestToken only). */
export type TokenCall =
  | { fn: 'approve'; token: Address; spender: Address; amount: bigint }
  | { fn: 'mint'; token: Address; to: Address; amount: bigint }

/** Clients on `rpcUrl` signing with `privateKey`; a coded error when the RPC does not answer. */
export async function tokenClients(rpcUrl: string, privateKey: Hex): Promise<DeployClients> {
  try {
    return await deployClients(rpcUrl, privateKey)
  } catch (err) {
    throw new TokenError('UNREACHABLE', `cannot reach ${rpcUrl}: ${firstLine(err)}`)
  }
}

/**
 * Sends `calls` from one account with consecutive nonces without waiting in between (one block for all
 * of them on an interval-mined chain), then waits for every receipt; throws TX_FAILED naming the first
 * that reverted. Returns the transaction hashes in call order.
 */
export async function sendTokenCalls(c: DeployClients, calls: readonly TokenCall[]): Promise<Hex[]> {
  if (calls.length === 0) return []
  const from = c.wallet.account.address
  let nonce: number
  try {
    nonce = await c.public.getTransactionCount({ address: from, blockTag: 'pending' })
  } catch (err) {
    throw new TokenError('UNREACHABLE', firstLine(err))
  }
  const hashes: Hex[] = []
  for (const call of calls) {
    const args =
      call.fn === 'approve' ? ([call.spender, call.amount] as const) : ([call.to, call.amount] as const)
    try {
      hashes.push(
        await c.wallet.writeContract({
          address: call.token,
          abi: testTokenAbi,
          functionName: call.fn,
          args,
          nonce: nonce++,
        }),
      )
    } catch (err) {
      throw new TokenError('TX_FAILED', `${call.fn} on ${call.token}: ${firstLine(err)}`)
    }
  }
  for (const [i, hash] of hashes.entries()) {
    const receipt = await c.public.waitForTransactionReceipt({ hash })
    if (receipt.status !== 'success')
      throw new TokenError('TX_FAILED', `${calls[i]!.fn} on ${calls[i]!.token}: ${hash} reverted`)
  }
  return hashes
}

/** `balanceOf(owner)` of an ERC-20. */
export async function tokenBalance(c: Pick<DeployClients, 'public'>, token: Address, owner: Address) {
  return c.public.readContract({
    address: token,
    abi: testTokenAbi,
    functionName: 'balanceOf',
    args: [owner],
  })
}

/** `allowance(owner, spender)` of an ERC-20. */
export async function tokenAllowance(
  c: Pick<DeployClients, 'public'>,
  token: Address,
  owner: Address,
  spender: Address,
): Promise<bigint> {
  return c.public.readContract({
    address: token,
    abi: testTokenAbi,
    functionName: 'allowance',
    args: [owner, spender],
  })
}

function firstLine(err: unknown): string {
  const e = err as { shortMessage?: string; message?: string }
  return (e.shortMessage ?? e.message ?? String(err)).split('\n')[0]!
}
