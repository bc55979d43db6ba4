import type { Hex } from 'viem'
import { generatePrivateKey, type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import {
  buildOrder,
  type GaslessCrossChainOrder,
  intentId,
  type SignedIntent,
  signedIntentToJson,
  signOrder,
} from '../../src/codec/intent.ts'

let nonceSeq = 1n

export function wallet(): PrivateKeyAccount {
  return privateKeyToAccount(generatePrivateKey())
}

/** A valid signed intent from `account`; `over` changes any order parameter. */
export async function makeIntent(
  account: PrivateKeyAccount,
  over: Partial<Parameters<typeof buildOrder>[0]> = {},
): Promise<{ intent: SignedIntent; id: Hex; body: unknown; order: GaslessCrossChainOrder }> {
  const now = Math.floor(Date.now() / 1000)
  const order = buildOrder({
    user: account.address,
    nonce: nonceSeq++,
    originChainId: 901n,
    openDeadline: now + 120,
    fillDeadline: now + 600,
    inputAmount: 1000n,
    outputAmount: 990n,
    destinationChainIds: [901n, 902n],
    ...over,
  })
  const signature = await signOrder(account, order)
  const intent = { order, signature }
  return { intent, id: intentId(order), body: signedIntentToJson(intent), order }
}
