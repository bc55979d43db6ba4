// Gas benchmark of the settlement contracts on two anvil rollups (901 origin, 902 destination):
// openFor, fill, claim (one leaf; a batch of 10 leaves under one certificate), refund and rotate, with
// 4, 10, 50 and 100 validators of equal power in the light client's set, each certificate signed by the
// smallest set above 2/3 (floor(2n/3) + 1). Gas is the receipt's gasUsed (intrinsic and calldata included).
// Storage is warm the way a running network's is: one order is opened and filled on each fresh
// deployment before measuring (the settler and the recipient already hold the token).
//
//   npm run bench -- gas [--sizes 4,10,50,100]
import { parseArgs } from 'node:util'
import { encodeFunctionData } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { networkSalt } from '../src/codec/eip712.ts'
import { murmurLightClientAbi } from '../src/contracts/abi.ts'
import { deploySettlement } from '../src/contracts/deploy.ts'
import {
  commitProof,
  type Leaf,
  makeHeader,
  makeValidatorSet,
  quorumSize,
  settlementTree,
  settlerWithClientErrorsAbi,
  TEST_NETWORK_ID,
} from '../test/helpers/settlement.ts'
import { type SettlementChain, send, startSettlementEnv } from '../test/helpers/settlement-env.ts'
import {
  approve,
  makeOrder,
  mint,
  openAndFill as openAndFillOrder,
  openFor,
  refundLeaf,
} from '../test/helpers/settlement-orders.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'gas'),
  options: { sizes: { type: 'string', default: '4,10,50,100' } },
})
const SIZES = values.sizes.split(',').map(Number)
const log = (s: string) => process.stderr.write(`${s}\n`)
const BATCH = 10

log('starting 2 anvil rollups (automine)...')
const env = await startSettlementEnv(makeValidatorSet(4, 'bench-gas/base'))
const [baseA, baseB] = env.chains as [SettlementChain, SettlementChain]
const rows: Record<string, Record<number, bigint>> = {}
const record = (op: string, n: number, gas: bigint) => {
  rows[op] ??= {}
  rows[op][n] = gas
}

try {
  const user = privateKeyToAccount(env.rollups.accounts[1]!.privateKey)
  await mint(baseA, baseA.addresses.user, 10n ** 30n)
  await mint(baseB, baseB.addresses.executor, 10n ** 30n)
  let height = 1n
  for (const n of SIZES) {
    log(`${n} validators...`)
    const set = makeValidatorSet(n, `bench-gas/${n}`)
    const signers = set.accounts.slice(0, quorumSize(n))
    const deploy = (c: SettlementChain) =>
      deploySettlement(
        { wallet: c.wallets.deployer, public: c.pub },
        {
          networkSalt: networkSalt(TEST_NETWORK_ID),
          validators: set.validators,
          powers: set.powers,
          refundGraceSec: 600,
        },
      )
    // The same deployer nonce on both chains: the same settler address, as on a devnet.
    const [dA, dB] = [await deploy(baseA), await deploy(baseB)]
    const A: SettlementChain = { ...baseA, contracts: { ...baseA.contracts, ...dA } }
    const B: SettlementChain = { ...baseB, contracts: { ...baseB.contracts, ...dB } }
    await approve(A, 'user', 2n ** 255n)

    const openAndFill = async () => {
      const r = await openAndFillOrder(A, B, user)
      return { ...r, openGas: r.opened.gasUsed, fillGas: r.filled.gasUsed }
    }
    const certified = async (leaves: Leaf[]) => {
      const tree = settlementTree(leaves)
      const header = makeHeader(set, height++, tree.root)
      return { proofs: tree.proofs, proof: await commitProof(set, header, signers) }
    }
    const call = (c: SettlementChain, functionName: string, args: readonly unknown[]) => ({
      address: c.contracts.settler,
      abi: settlerWithClientErrorsAbi,
      functionName,
      args,
    })

    await openAndFill() // warm-up: escrow and recipient balances exist from here on
    const one = await openAndFill()
    record('openFor (ERC-20)', n, one.openGas)
    record('fill (ERC-20)', n, one.fillGas)
    const c1 = await certified([one.leaf])
    record(
      'claim, 1 leaf',
      n,
      (await send(A, A.wallets.relayer, call(A, 'claim', [[one.leaf], c1.proofs, c1.proof]))).gasUsed,
    )

    const batch = []
    for (let i = 0; i < BATCH; i++) batch.push(await openAndFill())
    const leaves = batch.map((b) => b.leaf)
    const c10 = await certified(leaves)
    const batchGas = (await send(A, A.wallets.relayer, call(A, 'claim', [leaves, c10.proofs, c10.proof])))
      .gasUsed
    record(`claim, batch of ${BATCH}`, n, batchGas)
    record(`  per leaf`, n, batchGas / BigInt(BATCH))

    const order = await makeOrder(A)
    await openFor(A, order, user)
    const rleaf = refundLeaf(order, A.contracts.token, 1_000_000n)
    const cr = await certified([rleaf])
    record(
      'refund, 1 leaf',
      n,
      (await send(A, A.wallets.relayer, call(A, 'refund', [[rleaf], cr.proofs, cr.proof]))).gasUsed,
    )

    const next = makeValidatorSet(n, `bench-gas/${n}/next`)
    // The light client's own share of a claim: verify sent as a transaction of its own.
    record(
      'lightClient.verify alone',
      n,
      await A.pub.estimateGas({
        account: A.wallets.relayer.account,
        to: A.contracts.lightClient,
        data: encodeFunctionData({ abi: murmurLightClientAbi, functionName: 'verify', args: [c1.proof] }),
      }),
    )

    const rotation = await commitProof(
      set,
      makeHeader(set, height++, `0x${'00'.repeat(32)}`, next.hash),
      signers,
    )
    const rotated = await send(A, A.wallets.relayer, {
      address: A.contracts.lightClient,
      abi: murmurLightClientAbi,
      functionName: 'rotate',
      args: [rotation],
    })
    record('rotate', n, rotated.gasUsed)
  }
} finally {
  await env.stop()
}

const header = ['operation', ...SIZES.map((n) => `${n} validators`)]
const table = [
  header,
  ...Object.entries(rows).map(([op, byN]) => [op, ...SIZES.map((n) => String(byN[n] ?? ''))]),
]
const widths = header.map((_, i) => Math.max(...table.map((r) => r[i]!.length)))
console.log(
  `gas used (signers: floor(2n/3)+1 of n equal-power validators: ${SIZES.map((n) => quorumSize(n)).join(', ')})`,
)
for (const r of table)
  console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))
