/**
 * Deploys the settlement contracts on one rollup (INTERFACES.md, "Settlement contracts"): the light client
 * with the genesis validator set, the settler bound to it, and optionally the open-mint test token.
 * `murmur contracts deploy` and `devnet up` call {@link deploySettlement} once per rollup.
 */
import {
  type Account,
  type Address,
  type Chain,
  createPublicClient,
  createWalletClient,
  defineChain,
  type Hex,
  http,
  type PublicClient,
  type Transport,
  type WalletClient,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { MurmurError } from '../errors.ts'
import {
  murmurLightClientAbi,
  murmurLightClientBytecode,
  murmurSettlerAbi,
  murmurSettlerBytecode,
  testTokenAbi,
  testTokenBytecode,
} from './abi.ts'

export type DeployErrorCode = 'BAD_VALIDATOR_SET' | 'DEPLOY_FAILED'
/** A settlement deployment was refused before sending, or a deployment transaction failed. */
export class DeployError extends MurmurError<DeployErrorCode> {}

/** What the contracts are deployed with. */
export interface DeployParams {
  /** `keccak256(utf8(networkId))`: codec/eip712.ts `networkSalt`. */
  networkSalt: Hex
  /** The genesis validator set; sorted ascending here, as the header's `validatorsHash` is. */
  validators: readonly Address[]
  /** `powers[i]` is the voting power of `validators[i]` (before sorting). */
  powers: readonly bigint[]
  /** Genesis `params.refundGraceSec`. */
  refundGraceSec: bigint | number
  /** Also deploy the open-mint TestToken (test networks only). */
  testToken?: boolean
}

/** Addresses of one rollup's deployment: what `rollups[i].settlement` records, plus the token. */
export interface SettlementDeployment {
  settler: Address
  lightClient: Address
  token?: Address
}

/** A wallet client with an account, and a public client, on one rollup. */
export interface DeployClients {
  wallet: WalletClient<Transport, Chain, Account>
  public: PublicClient
}

/** A viem chain for a rollup known only by its id and URL. */
export function rollupChain(id: number, rpcUrl: string): Chain {
  return defineChain({
    id,
    name: `rollup-${id}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  })
}

/** Clients for `rpcUrl` signing with `privateKey`; the chain id is read from the rollup. */
export async function deployClients(rpcUrl: string, privateKey: Hex): Promise<DeployClients> {
  const transport = http(rpcUrl)
  const pub = createPublicClient({ transport })
  const chain = rollupChain(await pub.getChainId(), rpcUrl)
  return {
    wallet: createWalletClient({ account: privateKeyToAccount(privateKey), chain, transport }),
    public: createPublicClient({ chain, transport }) as PublicClient,
  }
}

/** The validator set in the light client's order: addresses ascending (as numbers), powers alongside. */
export function sortedValidatorSet(
  validators: readonly Address[],
  powers: readonly bigint[],
): { validators: Address[]; powers: bigint[] } {
  if (validators.length === 0 || validators.length !== powers.length) {
    throw new DeployError('BAD_VALIDATOR_SET', 'validators and powers must be non-empty and of equal length')
  }
  const pairs = validators.map((v, i) => [v.toLowerCase() as Address, powers[i]!] as const)
  pairs.sort(([a], [b]) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0))
  for (let i = 0; i < pairs.length; i++) {
    if (pairs[i]![1] <= 0n)
      throw new DeployError('BAD_VALIDATOR_SET', `validator ${pairs[i]![0]}: power must be > 0`)
    if (i > 0 && pairs[i]![0] === pairs[i - 1]![0]) {
      throw new DeployError('BAD_VALIDATOR_SET', `validator ${pairs[i]![0]} listed twice`)
    }
  }
  return { validators: pairs.map(([a]) => a), powers: pairs.map(([, p]) => p) }
}

async function waitDeployed(clients: DeployClients, hash: Hex, what: string): Promise<Address> {
  const receipt = await clients.public.waitForTransactionReceipt({ hash })
  if (receipt.status !== 'success' || receipt.contractAddress == null) {
    throw new DeployError('DEPLOY_FAILED', `${what}: deployment ${hash} reverted`)
  }
  return receipt.contractAddress.toLowerCase() as Address
}

/**
 * Deploys MurmurLightClient(networkSalt, validators, powers), MurmurSettler(lightClient, refundGraceSec)
 * and, with `testToken`, TestToken, one after the other (each waits for its receipt, so nonces never race).
 * Accepts clients or an RPC URL and a private key.
 */
export async function deploySettlement(
  target: DeployClients | { rpcUrl: string; privateKey: Hex },
  params: DeployParams,
): Promise<SettlementDeployment> {
  const clients = 'rpcUrl' in target ? await deployClients(target.rpcUrl, target.privateKey) : target
  const set = sortedValidatorSet(params.validators, params.powers)
  const lightClient = await waitDeployed(
    clients,
    await clients.wallet.deployContract({
      abi: murmurLightClientAbi,
      bytecode: murmurLightClientBytecode,
      args: [params.networkSalt, set.validators, set.powers],
    }),
    'MurmurLightClient',
  )
  const settler = await waitDeployed(
    clients,
    await clients.wallet.deployContract({
      abi: murmurSettlerAbi,
      bytecode: murmurSettlerBytecode,
      args: [lightClient, BigInt(params.refundGraceSec)],
    }),
    'MurmurSettler',
  )
  const out: SettlementDeployment = { settler, lightClient }
  if (params.testToken) {
    out.token = await waitDeployed(
      clients,
      await clients.wallet.deployContract({ abi: testTokenAbi, bytecode: testTokenBytecode, args: [] }),
      'TestToken',
    )
  }
  return out
}
