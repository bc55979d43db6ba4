/**
 * Fast local signing for the validator key. `fastAccount` is viem's `privateKeyToAccount` with
 * `signTypedData`, `sign({ hash })` and `signTransaction` replaced: the digest comes from `hashTypedDataFast` and the
 * signature from native libsecp256k1 (the `secp256k1` package's N-API binding), about ten times faster
 * than viem's pure-JS path. Both libsecp256k1 and viem's @noble/curves sign deterministically (RFC 6979)
 * with low s, so the signatures are byte-identical to viem's. When the binding cannot load, or with
 * `MURMUR_PURE_JS_CRYPTO=1`, the digest is signed by viem's own `account.sign`.
 *
 * (viem's `setSignEntropy`, which makes its signatures randomized, is not honoured by the native path;
 * Murmur never calls it.)
 */
import { bytesToHex, type Hex, hexToBytes, type LocalAccount, serializeTransaction } from 'viem'
import { type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { digestHex, hashTypedDataFastBytes } from '../codec/eip712-hash.ts'
import { keccak256Bytes } from './keccak.ts'
import { loadNativeSecp256k1, type NativeSecp256k1, nativeLoadError, PURE_JS_AT_START } from './native.ts'

/** Which implementation makes ECDSA signatures. */
export type SignBackend = 'native' | 'js'

let backend: SignBackend = PURE_JS_AT_START ? 'js' : loadNativeSecp256k1() !== undefined ? 'native' : 'js'

/** The backend every {@link fastAccount} signs with now. */
export function signBackend(): SignBackend {
  return backend
}

/** True when the native binding can be loaded. */
export function nativeSignAvailable(): boolean {
  return loadNativeSecp256k1() !== undefined
}

/**
 * Forces a backend (tests, benchmarks; `MURMUR_PURE_JS_CRYPTO=1` does the same for 'js' at startup).
 * Asking for 'native' when the binding cannot load is a programmer error.
 */
export function setSignBackend(next: SignBackend): void {
  if (next === 'native' && loadNativeSecp256k1() === undefined) {
    throw new Error('native secp256k1 binding is not available', { cause: nativeLoadError() })
  }
  backend = next
}

const HASH_RE = /^0x[0-9a-fA-F]{64}$/

/** `0x` || r || s || v (v = 27 + recid), lowercase, as viem's `serializeSignature`. */
function nativeSign(lib: NativeSecp256k1, digest: Uint8Array, key: Uint8Array): Hex {
  // No options: libsecp256k1's default nonce function is RFC 6979, and it always returns low s.
  const { signature, recid } = lib.ecdsaSign(digest, key)
  const rs = Buffer.from(signature.buffer, signature.byteOffset, 64).toString('hex')
  return `0x${rs}${recid === 0 ? '1b' : '1c'}`
}

/**
 * viem's `privateKeyToAccount(privateKey)` with `signTypedData` and `sign({ hash })` on the fast path;
 * and `signTransaction` on the fast path; `address`, `publicKey`, `signMessage`, `signAuthorization` are viem's.
 */
export function fastAccount(privateKey: Hex): PrivateKeyAccount {
  const account = privateKeyToAccount(privateKey)
  // privateKeyToAccount has validated the key.
  const key = Buffer.from(privateKey.slice(2), 'hex')

  const signDigest = async (digest: Uint8Array): Promise<Hex> => {
    const lib = backend === 'native' ? loadNativeSecp256k1() : undefined
    if (lib !== undefined) return nativeSign(lib, digest, key)
    return account.sign({ hash: digestHex(digest) })
  }

  const sign: PrivateKeyAccount['sign'] = async ({ hash }) => {
    if (typeof hash !== 'string' || !HASH_RE.test(hash)) return account.sign({ hash })
    return signDigest(Buffer.from(hash.slice(2), 'hex'))
  }

  const signTypedData: LocalAccount['signTypedData'] = async (typedData) =>
    signDigest(hashTypedDataFastBytes(typedData as Parameters<typeof hashTypedDataFastBytes>[0]))

  // viem's signTransaction (accounts/utils/signTransaction.ts) with the digest signed natively: the
  // executor signs one transaction per fill.
  const signTransaction: PrivateKeyAccount['signTransaction'] = async (transaction, options) => {
    const lib = backend === 'native' ? loadNativeSecp256k1() : undefined
    if (lib === undefined) return account.signTransaction(transaction, options)
    const serializer = options?.serializer ?? serializeTransaction
    const signable = transaction.type === 'eip4844' ? { ...transaction, sidecars: false } : transaction
    const digest = keccak256Bytes(hexToBytes(await serializer(signable)))
    const { signature, recid } = lib.ecdsaSign(digest, key)
    const r = bytesToHex(signature.subarray(0, 32))
    const s = bytesToHex(signature.subarray(32, 64))
    return serializer(transaction, { r, s, yParity: recid, v: BigInt(27 + recid) })
  }

  return { ...account, sign, signTypedData, signTransaction } as PrivateKeyAccount
}
